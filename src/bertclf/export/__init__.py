"""`bertclf export`: a run as a TensorFlow Serving SavedModel, checked and published atomically.

Job: build the serving graph around the run's own layers (`savedmodel`), check it
(`verification`: the op audit and a reload in a fresh process, `fresh_check`), and
publish it as BASE/NAME/VERSION without a reader ever seeing half of it (`publishing`,
`archives`); `exporter.export()` runs those steps in order.

May import: `bertclf.prediction` (to load the run), `bertclf.model`, `bertclf.config`
and the shared top-level modules.
"""
