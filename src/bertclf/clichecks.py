"""Checks of `bertclf` arguments and inputs that need no TensorFlow (cli.py delegates here).

Each raises a `BertclfError` subclass with one line naming the value and the fix; the
CLI prints it and exits 2, so a mistake costs well under a second.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from bertclf import cliargs
from bertclf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from bertclf.errors import BertclfError, ConfigError
from bertclf.model_config import check_cut


def check_trained_run(run: str) -> None:
    from bertclf.rundir import check_trained

    check_trained(run)


def check_out_folder(path: str | None, flag: str) -> None:
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise ConfigError(f"{flag} {path}: is a file; name a folder")


def config_from_args(a) -> RunConfig:
    from bertclf.rundir import read_meta

    if a.train is None:
        if not a.resume:
            raise BertclfError("train: give the DATA folder or file (or --resume an existing run)")
        # The run as saved, but where it is now (a run may have been moved or copied).
        saved = RunConfig.from_dict(read_meta(a.out)["config"])
        return dataclasses.replace(saved, out=a.out)
    check_cut(a.long, a.truncate)
    return RunConfig(
        data=cliargs.from_args(DataConfig, a),
        out=a.out,
        model=cliargs.from_args(ModelConfig, a),
        train=cliargs.from_args(TrainConfig, a),
        seed=a.seed,
    )


def check_data(data: DataConfig) -> None:
    """DATA, --val and --test: paths, columns, the names file (no TensorFlow)."""
    from bertclf.data import check_source
    from bertclf.labels import LabelFormat

    fmt = LabelFormat.from_config(data)
    for path in (data.train, data.val, data.test):
        if path:
            check_source(path, data.text_field, fmt)


def check_train(a) -> RunConfig:
    from bertclf import cluster, encoders, rundir

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
