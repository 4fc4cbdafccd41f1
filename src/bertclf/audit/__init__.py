"""Checking the data before trusting a model: label issues, conflicts, duplicates, leakage.

Job: `bertclf audit` (`auditor`): out-of-fold probabilities from a cheap model
(`label_issues`: TF-IDF or the encoder's sentence vectors, then cleanlab's confident
learning) or from k fine-tunings (`--engine finetune`: `bertclf.training.cross_fitting`,
handed in by the caller, since training imports this package) rank the training texts
most likely mislabelled; `duplicates` finds texts
that are the same up to case, spacing and punctuation (conflicts when their labels
differ), near duplicates, and test or validation texts that copy a training text. Every
training run calls `duplicates.quick_checks` and logs what it found.

May import: `bertclf.evaluation`, `bertclf.model`, `bertclf.data`, `bertclf.config` and
the shared top-level modules.
"""
