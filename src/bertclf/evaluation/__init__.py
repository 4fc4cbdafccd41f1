"""Measuring data and models: metrics, the linear baseline, the run report, dataset analysis.

Job: one metrics module (`metrics`: scikit-learn's where it fits), scoring a run on
labelled data (`evaluator`), the TF-IDF + linear SVM baseline every run is compared
with (`baseline`), the figures (`figures`) and the HTML report of a run (`report`, with
its explained predictions from `explanations`),
and `bertclf analyze` (`analysis`).

May import: `bertclf.prediction`, `bertclf.model`, `bertclf.data`, `bertclf.config` and
the shared top-level modules.
"""
