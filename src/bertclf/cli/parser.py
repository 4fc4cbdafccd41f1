"""The command line's parsers: flags generated from the config dataclasses, one per command.

A field's default, help text and choices are declared once, with
`bertclf.config.fields.option`; `add_options` turns fields into argparse arguments whose
help shows the default (as transformers' HfArgumentParser), and `from_args` builds the
validated dataclass back from the parsed namespace. Options may come anywhere after the
command (`parse_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
from collections.abc import Iterable
from typing import Any

from bertclf.config.audit import AuditConfig
from bertclf.config.data import DataConfig
from bertclf.config.export import ExportConfig
from bertclf.config.model import ModelConfig
from bertclf.config.predict import PredictConfig
from bertclf.config.run import RunConfig
from bertclf.config.score import ScoreConfig
from bertclf.config.train import TrainConfig
from bertclf.serving.config import ServeConfig
from bertclf.version import __version__

DESCRIPTION = "Fine-tune a BERT encoder on labelled texts, export it, serve it."
LABEL_OPTIONS = ("task", "label_sep", "label_fields", "label_names")


def _field_type(f: dataclasses.Field, meta: dict[str, Any]) -> Any:
    if "type" in meta:
        return meta["type"]
    if f.default is dataclasses.MISSING or f.default is None:
        return str
    return type(f.default)


def add_option(parser: argparse.ArgumentParser, f: dataclasses.Field, **override: Any) -> None:
    """One field as a flag (or, with `positional=True`, a positional argument)."""
    meta = {**f.metadata, **override}
    help_text = meta["help"]
    kwargs: dict[str, Any] = {}
    if meta.get("positional"):
        names = [f.name]
        if "nargs" in meta:
            kwargs["nargs"] = meta["nargs"]
    else:
        names = list(meta.get("flags") or ["--" + f.name.replace("_", "-")])
        kwargs["dest"] = f.name
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
    if isinstance(f.default, bool):
        # A flag that flips the default: --zip (False -> True), --no-verify (True -> False).
        kwargs["action"] = "store_false" if f.default else "store_true"
        kwargs["default"] = f.default
    else:
        kwargs["type"] = _field_type(f, meta)
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = meta.get("show", f.default)
            if "show" in meta or f.default not in (None, ()):
                help_text += " (default: %(default)s)"
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
    parser.add_argument(*names, help=help_text, **kwargs)


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    **overrides: dict[str, Any],
) -> None:
    """Flags for the fields of dataclass `cls` (those in `only`, less `skip`).

    `overrides[name]` replaces metadata of one field, e.g. `{"positional": True}`.
    Fields that are dataclasses themselves (RunConfig.model) are left out.
    """
    wanted = None if only is None else list(only)
    fields = {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}
    for name in wanted if wanted is not None else list(fields):
        if name not in skip:
            add_option(parser, fields[name], **overrides.get(name, {}))


def from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """`cls(...)` from the parsed flags of its fields (plus `values`), validated."""
    kwargs = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if hasattr(args, f.name) and f.name not in values
    }
    return cls(**kwargs, **values)


# ------------------------------------------------------------------ the parsers


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2, and an
    unknown option names the closest known one (as git does)."""

    def error(self, message):
        unknown = re.match(r"unrecognized arguments: (--[\w-]+)", message)
        if unknown:
            close = difflib.get_close_matches(unknown[1], self._option_string_actions, n=1)
            if close:
                message += f"; did you mean {close[0]}?"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def dashed(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--seq_len 64` -> `--seq-len 64`: every option also in its underscore spelling (as
    transformers' HfArgumentParser accepts both), where the dashed one is the parser's."""
    known = parser._option_string_actions
    out = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        if flag.startswith("--") and "_" in flag and flag.replace("_", "-") in known:
            arg = flag.replace("_", "-") + sep + value
        out.append(arg)
    return out


def _verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="everything, TensorFlow's own logs too"
    )


# `bertclf train --help` in groups, each (title, [(config class, its fields)]). Every
# field of the three classes is in exactly one group (tests/test_cli.py checks it).
TRAIN_GROUPS = (
    (
        "data",
        [
            (
                DataConfig,
                (
                    "train",
                    "test",
                    "val",
                    "val_split",
                    "split",
                    "text_field",
                    "label_field",
                    "exclude",
                ),
            )
        ],
    ),
    ("model", [(ModelConfig, ("model", "seq_len", "pooling", "dropout", "head", "clean"))]),
    (
        "optimisation",
        [
            (
                TrainConfig,
                (
                    "batch_size",
                    "lr",
                    "optimizer",
                    "weight_decay",
                    "warmup",
                    "embedding_update",
                    "layer_decay",
                    "reinit_layers",
                    "ema",
                ),
            )
        ],
    ),
    (
        "selection and small data",
        [(TrainConfig, ("epochs", "select", "class_weight", "patience", "contrastive"))],
    ),
    ("long documents", [(ModelConfig, ("truncate", "long", "stride", "max_chunks", "chunk_pool"))]),
    (
        "multi-label",
        [
            (DataConfig, ("task", "label_sep", "label_fields", "label_names")),
            (TrainConfig, ("thresholds",)),
        ],
    ),
    ("what a score means", [(TrainConfig, ("calibrate", "abstain_precision"))]),
    ("output", [(TrainConfig, ("checkpoint_every", "tb_histograms"))]),
    ("speed and devices", [(TrainConfig, ("precision", "bucketing", "jit", "strategy"))]),
)
EXAMPLES = {
    "train": "bertclf train examples/demo_data --test examples/demo_test --out runs/demo",
    "evaluate": "bertclf evaluate runs/demo examples/demo_test",
    "baseline": "bertclf baseline examples/demo_data --test examples/demo_test",
    "predict": 'bertclf predict runs/demo "My card was charged twice" --json',
    "export": "bertclf export runs/demo --to exports --name demo",
    "analyze": "bertclf analyze examples/demo_data --out runs/analysis",
    "audit": "bertclf audit examples/demo_data --test examples/demo_test --out runs/audit",
    "report": "bertclf report runs/demo",
    "score": "bertclf score exports/demo --input 'texts/*.jsonl' --output scores/demo",
    "serve": "bertclf serve exports --port 8501",
    "models": "bertclf models",
}


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A command's parser, its help ending with one example."""
    return sub.add_parser(
        name,
        help=help,
        description=f"{help[0].upper()}{help[1:]}.",
        epilog=f"example: {EXAMPLES[name]}",
    )


def _add_train(sub) -> None:
    p = _command(sub, "train", "fine-tune an encoder on labelled texts")
    for title, parts in TRAIN_GROUPS:
        group = p.add_argument_group(title)
        for cls, names in parts:
            positional = {"train": {"positional": True, "nargs": "?", "metavar": "DATA"}}
            add_options(group, cls, only=names, **(positional if cls is DataConfig else {}))
        if title == "data":
            add_options(group, RunConfig, only=("seed",))
        if title == "output":
            add_options(group, RunConfig, only=("out",))
            group.add_argument("--resume", action="store_true", help="continue an interrupted run")
            group.add_argument("--overwrite", action="store_true", help="replace an existing run")
            group.add_argument("--no-progress", action="store_true", help="no progress bar")
        if title == "speed and devices":
            group.add_argument(
                "--local-workers",
                type=int,
                help="run N multi-worker processes on this machine (loopback TF_CONFIG); "
                "the run is the chief's",
            )


def _add_evaluate(sub) -> None:
    p = _command(sub, "evaluate", "score a run on labelled data")
    p.add_argument("run", help="run directory")
    p.add_argument("data", help="folder with one sub-folder per class, or .csv/.jsonl")
    p.add_argument("--text-field", help="DATA's text column (default: the run's)")
    p.add_argument("--label-field", help="DATA's label column (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    # (a multi-label run reads DATA's labels as it read its training data: config.json)


def _add_baseline(sub) -> None:
    p = _command(sub, "baseline", "TF-IDF + linear SVM on the split 'train' would use, in seconds")
    add_options(
        p,
        DataConfig,
        train={"positional": True, "metavar": "DATA", "help": "labelled folder or file"},
        test={"help": "held-out folder or file, scored by the baseline fitted on DATA"},
    )
    add_options(p, RunConfig, only=("seed",))
    add_options(p, TrainConfig, only=("thresholds",))
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _add_predict(sub) -> None:
    p = _command(sub, "predict", "label new texts")
    add_options(
        p,
        PredictConfig,
        model={"positional": True, "metavar": "MODEL"},
        texts={"positional": True, "nargs": "*", "type": str, "metavar": "TEXT"},
    )


def _add_export(sub) -> None:
    p = _command(sub, "export", "export a run as a TF Serving SavedModel")
    add_options(p, ExportConfig, run={"positional": True, "metavar": "RUN"})


def _add_analyze(sub) -> None:
    p = _command(sub, "analyze", "documents, words and tokens per class; a --seq-len")
    p.add_argument("data", help="folder with one sub-folder per class, or .csv/.jsonl")
    add_options(p, ModelConfig, only=("model", "clean"))
    p.add_argument("--out", help="write summary.json and PNG figures to this folder")
    add_options(p, DataConfig, only=("text_field", "label_field", *LABEL_OPTIONS))


def _add_report(sub) -> None:
    p = _command(sub, "report", "curves, confusion matrices, mistakes, report.html")
    p.add_argument("run", help="run directory")
    p.add_argument("--test", help="labelled test folder or file (default: the run's --test)")


def _add_score(sub) -> None:
    p = _command(
        sub,
        "score",
        "score files with an export on Apache Beam (other --options go to Beam)",
    )
    add_options(p, ScoreConfig, model={"positional": True, "metavar": "EXPORT"})


def _add_serve(sub) -> None:
    p = _command(sub, "serve", "serve exports with TF Serving's REST API")
    add_options(p, ServeConfig, base={"positional": True, "metavar": "BASE"})


def _add_audit(sub) -> None:
    p = _command(sub, "audit", "find likely label errors, conflicts, duplicates and leakage")
    add_options(
        p,
        DataConfig,
        only=("train", "test", "val", "text_field", "label_field", *LABEL_OPTIONS),
        train={"positional": True, "metavar": "DATA", "help": "labelled folder or file"},
        test={"help": "test folder or file, checked for texts that repeat a training text"},
        val={"help": "validation folder or file, checked as --test is"},
    )
    add_options(p, AuditConfig)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_models(sub) -> None:
    _command(sub, "models", "list known encoder names")


COMMANDS = (
    _add_train,
    _add_evaluate,
    _add_baseline,
    _add_predict,
    _add_export,
    _add_analyze,
    _add_audit,
    _add_report,
    _add_score,
    _add_serve,
    _add_models,
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one parser per command."""
    parser = _Parser(
        prog="bertclf",
        description=DESCRIPTION,
        epilog="start with: bertclf train DATA --out RUN; each command's options: bertclf "
        "COMMAND --help; the README has a tour",
    )
    parser.add_argument("--version", action="version", version=f"bertclf {__version__}")
    _verbosity(parser)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    for command in sub.choices.values():
        _verbosity(command)
    return parser, dict(sub.choices)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Global flags, the command, then its arguments with options anywhere among them.

    argparse cannot intermix options and positionals across sub-parsers, so the
    command's own parser reads everything after the command name.
    """
    parser, commands = build_parser()
    at = next((i for i, a in enumerate(argv) if a in commands), None)
    if at is None:
        parser.parse_args(argv)  # --help, --version, or an error
        parser.error("name a command")
    top = parser.parse_args(argv[:at])
    command = commands[argv[at]]
    rest = dashed(argv[at + 1 :], command)
    if argv[at] == "score":  # flags bertclf does not know are Beam pipeline options
        args, args.beam_args = command.parse_known_intermixed_args(rest)
    else:
        args = command.parse_intermixed_args(rest)
    args.command = argv[at]
    args.argv = rest  # what a launcher passes on (train --local-workers)
    args.full_argv = [*argv[:at], argv[at], *rest]  # all of it (score re-runs in .venv-beam)
    args.quiet = args.quiet or top.quiet
    args.verbose = args.verbose or top.verbose
    return args
