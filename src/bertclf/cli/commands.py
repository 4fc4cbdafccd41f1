"""What each `bertclf` command does: check its arguments, then call the stage that works.

Every argument and input path that can be checked without TensorFlow is checked here
before it is imported, so a mistake costs well under a second and is one line on
stderr (a `BertclfError`, printed by `bertclf.cli.main`). The heavy stages are imported
inside each command, once its arguments are known to be good.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from pathlib import Path

from bertclf.cli.parser import from_args
from bertclf.config.data import DataConfig
from bertclf.config.export import ExportConfig
from bertclf.config.model import ModelConfig, check_cut
from bertclf.config.predict import PredictConfig
from bertclf.config.run import RunConfig
from bertclf.config.score import ScoreConfig
from bertclf.config.train import TrainConfig
from bertclf.errors import BertclfError, ConfigError, DataError
from bertclf.serving.config import ServeConfig

logger = logging.getLogger("bertclf")


# ------------------------------------------------------------------ checks before TensorFlow


def check_trained_run(run: str) -> dict:
    """The run's description (config.json and labels), or a one-line RunError."""
    from bertclf.model.rundir import check_trained

    return check_trained(run)


def check_out_folder(path: str | None, flag: str) -> None:
    """A folder the command will write into: not a file, and writable where it will be
    created (checked before any model is loaded)."""
    if path is None:
        return
    if Path(path).exists() and not Path(path).is_dir():
        raise ConfigError(f"{flag} {path}: is a file; name a folder")
    existing = next(
        p for p in (Path(path).absolute(), *Path(path).absolute().parents) if p.exists()
    )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable; choose a writable folder")


def config_from_args(a) -> RunConfig:
    from bertclf.model.rundir import read_meta

    if a.train is None:
        if not a.resume:
            raise BertclfError("train: give the DATA folder or file (or --resume an existing run)")
        # The run as saved, but where it is now (a run may have been moved or copied).
        saved = RunConfig.from_dict(read_meta(a.out)["config"])
        return dataclasses.replace(saved, out=a.out)
    check_cut(a.long, a.truncate)
    return RunConfig(
        data=from_args(DataConfig, a),
        out=a.out,
        model=from_args(ModelConfig, a),
        train=from_args(TrainConfig, a),
        seed=a.seed,
    )


def check_data(data: DataConfig) -> None:
    """DATA, --val and --test: paths, columns, the names file (no TensorFlow)."""
    from bertclf.data.datasets import check_source, read_excluded
    from bertclf.data.labels import LabelFormat

    fmt = LabelFormat.from_config(data)
    if data.exclude:  # the file is read (not yet matched) before TensorFlow is loaded
        read_excluded(data.exclude)
    for flag, path in (("DATA", data.train), ("--val", data.val), ("--test", data.test)):
        if path and flag != "DATA" and not Path(path).exists():  # name the flag it came from
            hint = " (a fraction of DATA is --val-split)" if flag == "--val" else ""
            raise DataError(
                f"{flag} {path}: no such file or folder; {flag} takes a labelled folder or "
                f"file{hint}"
            )
        if path:
            check_source(path, data.text_field, fmt)


def check_train(a) -> RunConfig:
    from bertclf.model import encoders, rundir
    from bertclf.training import cluster

    task = cluster.read_tf_config()  # a malformed TF_CONFIG: one line, before TensorFlow
    config = config_from_args(a)
    if a.local_workers is not None and a.local_workers < 1:
        raise ConfigError(f"--local-workers {a.local_workers} is invalid: use 1 or more")
    multi = config.train.strategy == "multiworker"
    if multi and task is None and a.local_workers is None:
        raise ConfigError(cluster.NEEDS_TF_CONFIG)
    rundir.check_run_dir(config.out, a.resume, a.overwrite)
    if a.train is not None:
        check_data(config.data)
        encoders.precheck(config.model.model)
        encoders.check_fits(config.model.model, config.model.seq_len, config.train.reinit_layers)
    return config


def check_port(host: str, port: int) -> None:
    """Fail at once if the port is taken, before any model is loaded."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(
            f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); choose another port"
        ) from None


# ------------------------------------------------------------------ commands


def cmd_train(a) -> int:
    config = check_train(a)
    if a.local_workers is not None:
        from bertclf.training.cluster import launch_local, local_argv

        return launch_local(local_argv(a.argv), a.local_workers)
    from bertclf.evaluation.metrics import format_metrics
    from bertclf.training.fine_tuning import train

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

    data = from_args(DataConfig, a)
    TrainConfig(thresholds=a.thresholds)  # validates --thresholds
    if a.thresholds != "tune" and not data.multilabel:
        raise ConfigError("--thresholds applies to --task multilabel only; drop it")
    check_data(data)
    from bertclf.data.datasets import load_splits
    from bertclf.evaluation.baseline import NAME, fit_baseline
    from bertclf.evaluation.metrics import format_metrics

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


def cmd_audit(a) -> int:
    from bertclf.config.audit import AuditConfig

    data = from_args(DataConfig, a)
    config = from_args(AuditConfig, a, data=data)
    from bertclf.audit.auditor import check_inputs

    check_inputs(config)  # before TensorFlow: a bad path costs well under a second
    from bertclf.audit.auditor import audit, summary_lines
    from bertclf.training.cross_fitting import fine_tuned_out_of_fold

    summary = audit(config, progress=not a.no_progress, fine_tune=fine_tuned_out_of_fold)
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        for line in summary_lines(summary, config.out):
            print(line)
    return 0


def cmd_evaluate(a) -> int:
    from bertclf.data.datasets import check_source
    from bertclf.evaluation.evaluator import run_label_format

    meta = check_trained_run(a.run)
    text_field = a.text_field or meta["config"]["data"]["text_field"]  # default: the run's
    check_source(a.data, text_field, run_label_format(a.run, a.label_field))
    from bertclf.evaluation.evaluator import evaluate
    from bertclf.evaluation.metrics import format_metrics

    m = evaluate(a.run, a.data, text_field, a.label_field)
    print(json.dumps(m, indent=2) if a.json else format_metrics(m))
    return 0


def cmd_predict(a) -> int:
    from bertclf.data.tables import check_input
    from bertclf.prediction.predict import check_output

    config = from_args(PredictConfig, a, texts=tuple(a.texts))
    from bertclf.prediction.predict import model_kind

    if model_kind(config.model) == "run":
        check_trained_run(config.model)
    if config.input:
        check_input(Path(config.input), config.text_field)
    if config.output:
        check_output(Path(config.output), config.overwrite)
    from bertclf.prediction.predict import predict_input

    count = predict_input(config)
    if config.output:
        logger.info("%d predictions written to %s", count, config.output)
    return 0


def cmd_export(a) -> int:
    config = from_args(ExportConfig, a)
    check_trained_run(config.run)
    check_out_folder(config.base, "--to")
    from bertclf.export.exporter import export
    from bertclf.export.verification import format_signatures

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
        format=config.format,
        quantize=config.quantize,
    )
    if a.verbose:  # the whole SignatureDef, as saved_model_cli prints it
        print(format_signatures(r.signatures))
    else:
        print("signatures: " + ", ".join(_signature_line(k, s) for k, s in r.signatures.items()))
    if config.format == "onnx":
        print(f"custom ops: {', '.join(r.non_core_ops)} (onnxruntime-extensions)")
    else:
        print(f"non-core ops: {', '.join(r.non_core_ops) or 'none'} (allowed on {config.target})")
    q = r.quantization
    if q is not None:
        print(
            f"int8: validation macro-F1 {q['macro_f1_int8']:.4f} (float32 "
            f"{q['macro_f1_float32']:.4f}, {q['texts']} texts), batch-1 p50 "
            f"{q['p50_ms_int8']:.2f} ms (float32 {q['p50_ms_float32']:.2f} ms)"
        )
    if r.max_abs_diff is not None:
        against = " against this process's int8 model" if q is not None else ""
        print(
            f"verified in a fresh process: max |probability difference|{against} "
            f"{r.max_abs_diff:.2e}"
        )
    size = r.size_bytes / 2**20
    print(f"exported: {r.path} (version {r.version}, {size:.1f} MiB, {r.seconds:.1f} s)")
    for package in r.packages:
        print(f"package: {package}")
    return 0


def _signature_line(name: str, sig: dict) -> str:
    """`serving_default (text -> scores, classes, class_ids)`: one signature in brief."""
    return f"{name} ({', '.join(sig['inputs'])} -> {', '.join(sorted(sig['outputs']))})"


def cmd_analyze(a) -> int:
    from bertclf.data.datasets import check_source
    from bertclf.data.labels import LabelFormat
    from bertclf.model import encoders

    fmt = LabelFormat.from_config(from_args(DataConfig, a, train=a.data))
    check_source(a.data, a.text_field, fmt)
    check_out_folder(a.out, "--out")
    encoders.precheck(a.model)
    from bertclf.evaluation.analysis import analyze, format_analysis

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
    from bertclf.evaluation.report import write_run_report

    print(f"report: {write_run_report(a.run, test=a.test).path}")
    return 0


def cmd_serve(a) -> int:
    config = from_args(ServeConfig, a)
    from bertclf.serving.server import make_repository

    make_repository(config)  # checks BASE (no TensorFlow yet)
    check_port(config.host, config.port)
    from bertclf.serving.server import serve

    return serve(config)


def cmd_score(a) -> int:
    config = from_args(ScoreConfig, a)
    from bertclf.prediction.scoring import export_info, require_beam

    if not a.verbose:  # Beam's notes (optional GCP clients and the like, some on root) and
        # its copy of a failed step's traceback: the error itself ends as one line (main).
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: "apache_beam" not in r.pathname)
    require_beam(a.full_argv)  # on in .venv-beam when there is one; else how to make it
    export_info(config.model)
    from bertclf.prediction.scoring import score

    result = score(config, a.beam_args)
    print(f"scored {len(result['inputs'])} file(s): {result['output']}")
    return 0


def cmd_models(a) -> int:
    from bertclf.model.encoders import known_models

    rows = known_models()
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  offline  source")
    for r in rows:
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['name']:<{width}}  {r['offline']:<7}  {r['source']}{note}")
    return 0
