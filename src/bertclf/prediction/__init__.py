"""Labels for new texts, from a trained run or an export: one interface, three commands.

Job: `Predictor` (batching, `predict_proba`, `predict`) with its two loaders,
`TrainedRun` (a run directory's kept weights, `load_run`) and `ExportedModel` (a
SavedModel); multi-label decision thresholds (`thresholds`); `bertclf predict`
(`predict`: streaming input and output) and `bertclf score` on Apache Beam (`scoring`).

May import: `bertclf.model`, `bertclf.data`, `bertclf.config` and the shared top-level
modules (`servable` for exports).
"""
