"""The `bertclf` command line: parses arguments, checks them, and delegates to the library.

Flags come from the config dataclasses (`bertclf.cliargs`), so `--help` shows each
default once declared. Options may come anywhere after the command. Every argument
and input path that can be checked without TensorFlow is checked before it is
imported, so a mistake costs well under a second; TensorFlow's start-up noise is
filtered off stderr (`-v` shows it). A user's mistake is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bertclf import cliargs  # noqa: E402
from bertclf.clichecks import (  # noqa: E402
    check_data,
    check_out_folder,
    check_port,
    check_train,
    check_trained_run,
)
from bertclf.command_config import (  # noqa: E402
    ExportConfig,
    PredictConfig,
    ScoreConfig,
    ServeConfig,
)
from bertclf.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from bertclf.errors import BertclfError, ConfigError, DataError, refusal_advice, write_refused  # noqa: E402
from bertclf.version import __version__  # noqa: E402

logger = logging.getLogger("bertclf")
LABEL_OPTIONS = ("task", "label_sep", "label_fields", "label_names")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="everything, TensorFlow's own logs too"
    )


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune an encoder on labelled texts")
    cliargs.add_options(p, DataConfig, train={"positional": True, "nargs": "?", "metavar": "DATA"})
    cliargs.add_options(p, RunConfig, only=("out", "seed"))
    cliargs.add_options(p, ModelConfig)
    cliargs.add_options(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--local-workers",
        type=int,
        help="run N multi-worker processes on this machine (loopback TF_CONFIG); "
        "the run is the chief's",
    )
    p.set_defaults(func=cmd_train)


def _add_evaluate_predict(sub) -> None:
    p = sub.add_parser("evaluate", help="score a run on labelled data")
    p.add_argument("run", help="run directory")
    p.add_argument("data", help="folder with one sub-folder per class, or .csv/.jsonl")
    cliargs.add_options(p, DataConfig, only=("text_field", "label_field"))
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)
    # (a multi-label run reads DATA's labels as it read its training data: config.json)

    p = sub.add_parser(
        "baseline", help="TF-IDF + linear SVM on the split 'train' would use, in seconds"
    )
    cliargs.add_options(p, DataConfig, train={"positional": True, "metavar": "DATA"})
    cliargs.add_options(p, RunConfig, only=("seed",))
    cliargs.add_options(p, TrainConfig, only=("thresholds",))
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("predict", help="label new texts")
    cliargs.add_options(
        p,
        PredictConfig,
        model={"positional": True, "metavar": "MODEL"},
        texts={"positional": True, "nargs": "*", "type": str, "metavar": "TEXT"},
    )
    p.set_defaults(func=cmd_predict)


def _add_others(sub) -> None:
    p = sub.add_parser("export", help="export a run as a TF Serving SavedModel")
    cliargs.add_options(p, ExportConfig, run={"positional": True, "metavar": "RUN"})
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("analyze", help="documents, words and tokens per class; a --seq-len")
    p.add_argument("data", help="folder with one sub-folder per class, or .csv/.jsonl")
    cliargs.add_options(p, ModelConfig, only=("model", "clean"))
    p.add_argument("--out", help="write summary.json and PNG figures to this folder")
    cliargs.add_options(p, DataConfig, only=("text_field", "label_field", *LABEL_OPTIONS))
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="curves, confusion matrices, mistakes, report.html")
    p.add_argument("run", help="run directory")
    p.add_argument("--test", help="labelled test folder or file (default: the run's --test)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "score",
        help="score files with an export on Apache Beam (other --options go to Beam)",
    )
    cliargs.add_options(p, ScoreConfig, model={"positional": True, "metavar": "EXPORT"})
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("serve", help="serve exports with TF Serving's REST API")
    cliargs.add_options(p, ServeConfig, base={"positional": True, "metavar": "BASE"})
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("models", help="list known encoder names")
    p.set_defaults(func=cmd_models)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one parser per command."""
    parser = _Parser(prog="bertclf", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"bertclf {__version__}")
    _verbosity(parser)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_train(sub)
    _add_evaluate_predict(sub)
    _add_others(sub)
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
    if argv[at] == "score":  # flags bertclf does not know are Beam pipeline options
        args, args.beam_args = command.parse_known_intermixed_args(argv[at + 1 :])
    else:
        args = command.parse_intermixed_args(argv[at + 1 :])
    args.command = argv[at]
    args.argv = argv[at + 1 :]  # what a launcher passes on (train --local-workers)
    args.quiet = args.quiet or top.quiet
    args.verbose = args.verbose or top.verbose
    return args


# ------------------------------------------------------------------ commands


def cmd_train(a) -> int:
    config = check_train(a)
    if a.local_workers is not None:
        from bertclf.cluster import launch_local, local_argv

        return launch_local(local_argv(a.argv), a.local_workers)
    from bertclf.evaluation import format_metrics
    from bertclf.training import train

    result = train(config, resume=a.resume, overwrite=a.overwrite, progress=not a.no_progress)
    kept = result.history[result.kept_epoch - 1]
    print(f"run: {result.run_dir}")
    print(
        f"kept epoch {result.kept_epoch} of {len(result.history)}: validation macro-F1 "
        f"{kept['val_macro_f1']:.4f}, accuracy {kept['val_accuracy']:.4f}"
    )
    base = result.baseline["validation"]
    print(
        f"baseline ({result.baseline['model']}): validation macro-F1 {base['macro_f1']:.4f}, "
        f"accuracy {base['accuracy']:.4f}"
    )
    if result.test_metrics is not None:
        print("test set (kept weights):")
        print(format_metrics(result.test_metrics))
        test_base = result.baseline["test"]
        print(
            f"baseline on the test set: macro-F1 {test_base['macro_f1']:.4f}, "
            f"accuracy {test_base['accuracy']:.4f}"
        )
    return 0


def cmd_baseline(a) -> int:

    data = cliargs.from_args(DataConfig, a)
    TrainConfig(thresholds=a.thresholds)  # validates --thresholds
    if a.thresholds != "tune" and data.task != "multilabel":
        raise ConfigError("--thresholds applies to --task multilabel only; drop it")
    check_data(data)
    from bertclf.baseline import NAME, fit_baseline
    from bertclf.data import load_splits
    from bertclf.evaluation import format_metrics

    result = fit_baseline(load_splits(data, a.seed), a.thresholds)
    if a.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    for split in ("validation", "test"):
        metrics = getattr(result, split)
        if metrics is not None:
            print(f"{NAME}, {split}:")
            print(format_metrics(metrics))
    return 0


def cmd_evaluate(a) -> int:
    from bertclf.data import check_source
    from bertclf.evaluation import run_label_format

    check_trained_run(a.run)
    check_source(a.data, a.text_field, run_label_format(a.run, a.label_field))
    from bertclf.evaluation import evaluate, format_metrics

    m = evaluate(a.run, a.data, a.text_field, a.label_field)
    print(json.dumps(m, indent=2) if a.json else format_metrics(m))
    return 0


def cmd_predict(a) -> int:
    from bertclf.inputs import check_input, check_output

    config = cliargs.from_args(PredictConfig, a, texts=tuple(a.texts))
    from bertclf.predictor import model_kind

    if model_kind(config.model) == "run":
        check_trained_run(config.model)
    if config.input:
        check_input(Path(config.input), config.text_field)
    if config.output:
        check_output(Path(config.output), config.overwrite)
    from bertclf.predictor import predict_input

    count = predict_input(config)
    if config.output:
        logger.info("%d predictions written to %s", count, config.output)
    return 0


def cmd_export(a) -> int:
    config = cliargs.from_args(ExportConfig, a)
    check_trained_run(config.run)
    check_out_folder(config.base, "--to")
    from bertclf.export import export
    from bertclf.export_check import format_signatures

    r = export(
        config.run,
        config.base,
        name=config.name,
        version=config.version,
        target=config.target,
        verify=config.verify,
        zip_archive=config.zip,
        sagemaker=config.sagemaker,
        precision=config.precision,
    )
    print(format_signatures(r.signatures))
    print(f"non-core ops: {', '.join(r.non_core_ops) or 'none'} (allowed on {config.target})")
    if r.max_abs_diff is not None:
        print(f"verified in a fresh process: max |probability difference| {r.max_abs_diff:.2e}")
    size = r.size_bytes / 2**20
    print(f"exported: {r.path} (version {r.version}, {size:.1f} MiB, {r.seconds:.1f} s)")
    for package in r.packages:
        print(f"package: {package}")
    return 0


def cmd_analyze(a) -> int:
    from bertclf import encoders
    from bertclf.data import check_source
    from bertclf.labels import LabelFormat

    fmt = LabelFormat.from_config(cliargs.from_args(DataConfig, a, train=a.data))
    check_source(a.data, a.text_field, fmt)
    check_out_folder(a.out, "--out")
    encoders.precheck(a.model)
    from bertclf.analysis import analyze, format_analysis

    result = analyze(
        a.data,
        model=a.model,
        out=a.out,
        text_field=a.text_field,
        label_field=fmt,
        clean=a.clean,
    )
    print(format_analysis(result.summary))
    if a.out:
        print(f"written: {a.out}/summary.json, word_counts.png, token_counts.png")
    return 0


def cmd_report(a) -> int:
    check_trained_run(a.run)
    if a.test is not None and not Path(a.test).exists():
        raise DataError(f"--test {a.test}: no such file or folder")
    from bertclf.report import write_run_report

    print(f"report: {write_run_report(a.run, test=a.test).path}")
    return 0


def cmd_serve(a) -> int:
    config = cliargs.from_args(ServeConfig, a)
    from bertclf.serving.server import make_repository

    make_repository(config)  # checks BASE (no TensorFlow yet)
    check_port(config.host, config.port)
    from bertclf.serving.server import serve

    return serve(config)


def cmd_score(a) -> int:
    config = cliargs.from_args(ScoreConfig, a)
    from bertclf.scoring import export_info, require_beam

    if not a.verbose:  # Beam's notes (optional GCP clients and the like, some on root) and
        # its copy of a failed step's traceback: the error itself ends as one line (main).
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: "apache_beam" not in r.pathname)
    require_beam()  # one line on how to install it, before anything else
    export_info(config.model)
    from bertclf.scoring import score

    result = score(config, a.beam_args)
    print(f"scored {len(result['inputs'])} file(s): {result['output']}")
    return 0


def cmd_models(a) -> int:
    from bertclf.encoders import known_models

    rows = known_models()
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  offline  source")
    for r in rows:
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['name']:<{width}}  {r['offline']:<7}  {r['source']}{note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else list(argv))
    except BertclfError as e:  # a flag's own parser (--clean) found the value invalid
        print(f"bertclf: error: {e}", file=sys.stderr)
        return e.exit_code
    from bertclf.tflog import filter_stderr

    noise = None if args.verbose else filter_stderr()
    try:
        # Our loggers at INFO, everyone else's (absl, TensorFlow) at WARNING.
        logging.basicConfig(level=logging.WARNING, format="bertclf: %(message)s")
        logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
        try:
            return args.func(args)
        except BertclfError as e:
            print(f"bertclf: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("bertclf: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # a write the disk refused: one line, not a traceback
            if (reason := write_refused(e)) is None:
                raise
            run = args.out if args.func is cmd_train else None
            print(f"bertclf: error: {reason}: {refusal_advice(run)}", file=sys.stderr)
            return 1
    finally:
        if noise is not None:
            noise.close()
