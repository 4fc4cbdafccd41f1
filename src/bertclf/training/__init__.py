"""Fine-tuning: `train()` and the loop it runs, on one device or several workers.

Job: resolve a `RunConfig` for this machine and this data (`fine_tuning`), build the
model and optimizer under a `tf.distribute` strategy (`hardware`, `cluster`), run the
custom `tf.GradientTape` loop (`trainer`) on batches made once per split (`pipeline`),
with SetFit's contrastive stage first where the policy says (`contrastive`), fit what
makes its scores mean something on the kept weights (`calibration`), and write the run
directory. `cross_fitting` trains once per fold for `bertclf audit --engine finetune`.

May import: `bertclf.audit` (its checks and folds), `bertclf.evaluation`,
`bertclf.prediction`, `bertclf.model`, `bertclf.data`, `bertclf.config` and the shared
top-level modules. Nothing imports it but the CLI and the API (`bertclf.train`).
"""
