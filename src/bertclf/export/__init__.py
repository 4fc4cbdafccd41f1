"""`bertclf export`: a run as a TensorFlow Serving SavedModel, checked and published atomically.

Job: build the serving graph around the run's own layers (`savedmodel`), check it
(`verification`: the op audit and a reload in a fresh process, `fresh_check`), and
publish it as BASE/NAME/VERSION without a reader ever seeing half of it (`publishing`,
`archives`); `exporter.export()` runs those steps in order. `--format onnx` converts the
same graph to one ONNX model (`onnx`, its layer norms and GELUs fused by `onnx_fusion`, checked by
`onnx_check` without TensorFlow), and
`--quantize int8` keeps its int8 form only where it pays (`quantization`).

May import: `bertclf.prediction` (to load the run), `bertclf.model`, `bertclf.config`,
`bertclf.evaluation` and `bertclf.data` (the int8 guard's validation macro-F1, on the
run's validation split as training read it) and the shared top-level modules.
"""
