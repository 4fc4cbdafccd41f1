"""The classifier and everything inside its graph, and the run directory that stores one.

Job: resolve and load a BERT encoder (`encoders`), turn raw strings into BERT inputs
with TensorFlow ops only (`preprocessing`: the same layers train and serve), put a
pooled, dropout and dense head on it (`classifier`), turn its logits and sentence
vectors into calibrated scores, an OOD score and an abstain flag (`calibration`), say
which words drove a score (`attribution`: integrated gradients), swap in cheaper kernels
(`fastops`), and lay out a trained run on disk (`rundir`: no TensorFlow).

May import: `bertclf.config`, `bertclf.errors`, `bertclf.fileio`, `bertclf.version`.
"""
