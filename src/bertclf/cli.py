"""The `bertclf` command line: parses arguments and delegates to the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bertclf.config import (  # noqa: E402
    CLEAN_STEPS,
    EMBEDDING_UPDATES,
    HEADS,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    STRATEGIES,
    TB_HISTOGRAMS,
    TOGGLES,
    TRUNCATIONS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    parse_clean,
)
from bertclf.errors import BertclfError  # noqa: E402
from bertclf.version import __version__  # noqa: E402

logger = logging.getLogger("bertclf")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune an encoder on labelled texts")
    p.add_argument(
        "data",
        nargs="?",
        help="folder with one sub-folder per class, or .csv/.jsonl (optional with --resume)",
    )
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument(
        "--test",
        "--test-dir",
        dest="test",
        help="held-out folder or file, scored with the best weights after training",
    )
    p.add_argument("--text-field", default="text", help="CSV/JSONL text column")
    p.add_argument("--label-field", default="label", help="CSV/JSONL label column")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction")
    p.add_argument("--seed", type=int, default=42, help="seed for split, init, shuffle, dropout")
    p.add_argument(
        "--model", default="minilm-l6", help="encoder name or directory (see 'bertclf models')"
    )
    p.add_argument("--seq-len", type=int, default=128, help="tokens per text, 8..512")
    p.add_argument("--pooling", choices=POOLINGS, default="mean", help="sentence vector")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--head", choices=HEADS, default="softmax", help="sigmoid: one logit, binary")
    p.add_argument("--clean", default="none", help=f"none, or comma-separated {CLEAN_STEPS}")
    p.add_argument("--truncate", choices=TRUNCATIONS, default="waterfall")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-5, help="peak learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument(
        "--embedding-update",
        choices=EMBEDDING_UPDATES,
        default="lazy",
        help="lazy: Adam moves only the embedding rows a batch uses; dense: all rows",
    )
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of all steps")
    p.add_argument("--strategy", choices=STRATEGIES, default="default")
    p.add_argument("--tb-histograms", choices=TB_HISTOGRAMS, default="head")
    p.add_argument(
        "--bucketing",
        choices=TOGGLES,
        default="auto",
        help="pad batches only to their longest text (multiples of 4; 32 under XLA)",
    )
    p.add_argument(
        "--jit", choices=TOGGLES, default="auto", help="XLA-compile the steps (auto: on GPUs)"
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="mixed precision (auto: bf16 where the CPU or GPU has native bf16, else fp32)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="score a run on labelled data")
    p.add_argument("run", help="run directory")
    p.add_argument("data", help="folder with one sub-folder per class, or .csv/.jsonl")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label new texts")
    p.add_argument("model", help="run directory, or exported BASE/NAME[/VERSION]")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--input", help="file with one text per line, or JSONL with a text field")
    p.add_argument("--text-field", default="text", help="JSONL text field")
    p.add_argument("--json", action="store_true", help="JSON lines output")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a run as a TF Serving SavedModel")
    p.add_argument("run", help="run directory")
    p.add_argument("--to", required=True, dest="base", help="model base path (BASE)")
    p.add_argument("--name", help="model name (default: the run directory's name)")
    p.add_argument("--version", type=int, help="version (default: next free, from 1)")
    p.add_argument(
        "--target",
        default="tfserving-2.19",
        help="server whose ops the export must stay within: tfserving-2.19 "
        "(default) or tensorflow-2.21",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the parity check in a fresh process (the op audit still runs)",
    )
    p.add_argument("--zip", action="store_true", help="also write BASE/NAME.zip")
    p.add_argument(
        "--sagemaker",
        action="store_true",
        help="also write BASE/NAME-VERSION.model.tar.gz for SageMaker",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("analyze", help="documents, words and tokens per class; a --seq-len")
    p.add_argument("data", help="folder with one sub-folder per class, or .csv/.jsonl")
    p.add_argument("--model", default="minilm-l6", help="whose tokenizer counts tokens")
    p.add_argument("--out", help="write summary.json and PNG figures here")
    p.add_argument("--clean", default="none", help="cleaning steps, as for train")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="curves, confusion matrices, mistakes, report.html")
    p.add_argument("run", help="run directory")
    p.add_argument("--test", help="labelled test folder or file (default: the run's --test)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="serve exports with TF Serving's REST API")
    p.add_argument("base", help="model base path (BASE/NAME/VERSION), or one model's directory")
    p.add_argument("--name", help="model name when BASE is a single model's directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--poll", type=float, default=1.0, help="seconds between scans of BASE")
    p.add_argument("--max-batch", type=int, default=32, help="most texts in one model call")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="under concurrent load, how long a batch waits to fill up (a lone request "
        "is never held back)",
    )
    p.add_argument("--max-queue", type=int, default=512, help="queued texts before 429")
    p.add_argument("--max-body-mb", type=float, default=10.0, help="request body limit (413)")
    p.add_argument("--max-instances", type=int, default=1024, help="texts per request")
    p.add_argument("--access-log", action="store_true")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("models", help="list known encoder names")
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bertclf", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bertclf {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_commands(sub)
    return parser


# ------------------------------------------------------------------ commands


def config_from_args(a) -> RunConfig:
    from bertclf.rundir import read_meta

    if a.data is None:
        if not a.resume:
            raise BertclfError("train: give the DATA folder or file (or --resume an existing run)")
        return RunConfig.from_dict(read_meta(a.out)["config"])
    return RunConfig(
        data=DataConfig(
            train=a.data,
            test=a.test,
            text_field=a.text_field,
            label_field=a.label_field,
            val_split=a.val_split,
        ),
        out=a.out,
        model=ModelConfig(
            model=a.model,
            seq_len=a.seq_len,
            pooling=a.pooling,
            dropout=a.dropout,
            head=a.head,
            clean=parse_clean(a.clean),
            truncate=a.truncate,
        ),
        train=TrainConfig(
            epochs=a.epochs,
            batch_size=a.batch_size,
            lr=a.lr,
            optimizer=a.optimizer,
            weight_decay=a.weight_decay,
            embedding_update=a.embedding_update,
            warmup=a.warmup,
            strategy=a.strategy,
            tb_histograms=a.tb_histograms,
            bucketing=a.bucketing,
            jit=a.jit,
            precision=a.precision,
        ),
        seed=a.seed,
    )


def cmd_train(a) -> int:
    from bertclf.evaluation import format_metrics
    from bertclf.training import train

    config = config_from_args(a)
    result = train(config, resume=a.resume, overwrite=a.overwrite, progress=not a.no_progress)
    print(f"run: {result.run_dir}")
    print(f"best validation accuracy: {result.best_val_accuracy:.4f}")
    if result.test_metrics is not None:
        print("test set (best weights):")
        print(format_metrics(result.test_metrics))
    return 0


def cmd_evaluate(a) -> int:
    from bertclf.evaluation import evaluate, format_metrics

    m = evaluate(a.run, a.data, a.text_field, a.label_field)
    print(json.dumps(m, indent=2) if a.json else format_metrics(m))
    return 0


def read_inputs(a) -> list[str]:
    """Texts from the command line and/or --input (plain lines or JSONL)."""
    from bertclf.inputs import read_texts

    texts = list(a.texts)
    if a.input:
        texts += read_texts(Path(a.input), a.text_field)
    if not texts:
        raise BertclfError("predict: no texts; pass them as arguments or with --input FILE")
    return texts


def cmd_predict(a) -> int:
    from bertclf.predictor import load_predictor

    texts = read_inputs(a)
    predictor = load_predictor(a.model)
    for text, row in zip(texts, predictor.predict(texts), strict=True):
        if a.json:
            print(json.dumps({"text": text, **row}, ensure_ascii=False))
        else:
            probs = "  ".join(f"{k}={v:.4f}" for k, v in row["probabilities"].items())
            snippet = " ".join(text.split())[:60]
            print(f"{row['label']}\t{row['probability']:.4f}\t{probs}\t{snippet}")
    return 0


def cmd_export(a) -> int:
    from bertclf.export import export
    from bertclf.export_check import format_signatures

    r = export(
        a.run,
        a.base,
        name=a.name,
        version=a.version,
        target=a.target,
        verify=not a.no_verify,
        zip_archive=a.zip,
        sagemaker=a.sagemaker,
    )
    print(format_signatures(r.signatures))
    print(f"non-core ops: {', '.join(r.non_core_ops) or 'none'} (allowed on {a.target})")
    if r.max_abs_diff is not None:
        print(f"verified in a fresh process: max |probability difference| {r.max_abs_diff:.2e}")
    print(
        f"exported: {r.path} (version {r.version}, {r.size_bytes / 2**20:.1f} MiB, "
        f"{r.seconds:.1f} s)"
    )
    for package in r.packages:
        print(f"package: {package}")
    return 0


def cmd_analyze(a) -> int:
    from bertclf.analysis import analyze, format_analysis

    result = analyze(
        a.data,
        model=a.model,
        out=a.out,
        text_field=a.text_field,
        label_field=a.label_field,
        clean=parse_clean(a.clean),
    )
    print(format_analysis(result.summary))
    if a.out:
        print(f"written: {a.out}/summary.json, word_counts.png, token_counts.png")
    return 0


def cmd_report(a) -> int:
    from bertclf.report import write_run_report

    print(f"report: {write_run_report(a.run, test=a.test)}")
    return 0


def cmd_serve(a) -> int:
    from bertclf.serving.server import serve

    return serve(
        a.base,
        name=a.name,
        host=a.host,
        port=a.port,
        poll=a.poll,
        max_batch=a.max_batch,
        max_wait_ms=a.max_wait_ms,
        max_queue=a.max_queue,
        max_body_mb=a.max_body_mb,
        max_instances=a.max_instances,
        access_log=a.access_log,
    )


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
    args = build_parser().parse_args(argv)
    # Our loggers at INFO, everyone else's (absl, TensorFlow) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="bertclf: %(message)s", stream=sys.stderr)
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except BertclfError as e:
        print(f"bertclf: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("bertclf: interrupted", file=sys.stderr)
        return 130
