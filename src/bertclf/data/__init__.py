"""Labelled and unlabelled texts, read from disk: formats, labels, the validation split.

Job: turn a class-per-folder tree or a table (CSV, TSV, JSONL, one text per line) into
texts, label ids and where each came from (`datasets.read_labelled`, `load_splits`),
and unlabelled files into rows to classify (`tables.read_rows`). One decoding rule for
every reader (`tables.decode`) and one label order (`labels.label_order`). No
TensorFlow.

May import: `bertclf.config`, `bertclf.errors`.
"""
