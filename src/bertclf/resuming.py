"""Resuming a run: the same settings, an intact checkpoint, history up to its epoch.

`bertclf train --resume` continues an interrupted run from its last checkpoint.
`bertclf.training` calls these before any work (`check_checkpoint`, `check_resume`) and
after the model is built (`restore`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import tensorflow as tf

from bertclf import rundir
from bertclf.config import RunConfig
from bertclf.errors import RunError
from bertclf.fileio import read_json
from bertclf.trainer import Trainer

logger = logging.getLogger(__name__)

# Settings that do not change what is trained: --resume may give other values.
RESUMABLE_CHANGES = ("checkpoint_every",)


def check_resume(config: RunConfig, run_dir: Path) -> None:
    """--resume must continue the same run: every (resolved) setting must match the saved one."""
    saved = rundir.read_meta(run_dir)["config"]
    now = json.loads(json.dumps(config.to_dict()))  # as config.json holds it: lists, not tuples
    diffs = [
        f"{section}.{key}: run has {saved[section][key]!r}, now {value!r}"
        for section in ("data", "model", "train")
        for key, value in now[section].items()
        if saved.get(section, {}).get(key) != value and key not in RESUMABLE_CHANGES
    ]
    if saved.get("seed") != now["seed"]:
        diffs.append(f"seed: run has {saved.get('seed')}, now {now['seed']}")
    if diffs:
        raise RunError(
            f"{run_dir}: --resume with different settings ({diffs[0]}); repeat the "
            "original command, or use --overwrite to start over"
        )


def latest_checkpoint(run_dir: Path) -> str | None:
    return tf.train.latest_checkpoint(str(run_dir / rundir.CHECKPOINTS))


def check_checkpoint(run_dir: Path) -> None:
    """Read every tensor of the last checkpoint, so a damaged one fails before any work."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return
    try:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - truncated files raise OpError, IndexError, ...
        raise RunError(
            f"{latest}: the checkpoint cannot be restored ({type(e).__name__}); it is damaged: "
            "train again with --overwrite"
        ) from None


def restore(trainer: Trainer, run_dir: Path) -> list[dict[str, float]]:
    """Load the last checkpoint of `run_dir`; history rows after its epoch are dropped."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        logger.info("--resume: no checkpoint yet; starting from epoch 1")
        return []
    try:
        trainer.checkpoint.restore(latest).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:  # other settings
        raise RunError(
            f"{latest}: the checkpoint cannot be restored ({type(e).__name__}); it is damaged "
            "or from other settings: train again with --overwrite"
        ) from None
    done, step = int(trainer.epoch.numpy()), int(trainer.step_in_epoch.numpy())
    history_file = run_dir / rundir.HISTORY
    history = read_json(history_file)[:done] if history_file.is_file() else []
    where = f"epoch {done + 1} at step {step + 1}" if step else f"after epoch {done}"
    logger.info(
        "--resume: continuing %s of %d (kept so far: epoch %d)",
        where,
        trainer.steps_per_epoch if step else trainer.cfg.train.epochs,
        int(trainer.kept.numpy()),
    )
    return history
