"""The run directory: its layout, its creation rules, and its description (config.json).

RUN/
  config.json        resolved RunConfig, label names, encoder source, backbone config
  labels.txt         one label per line, in model output order (export's labels asset)
  vocab.txt          the tokenizer's WordPiece vocabulary
  best.weights.h5    weights of the kept epoch (see --select): their moving average (--ema)
  thresholds.json    multi-label runs: the kept epoch's decision threshold per label, and
                     the SHA-256 of the weights they were tuned for
  checkpoints/       last finished epoch: model, optimizer state, the averages (for --resume)
  history.json       per-epoch metrics
  samples.json       a sample of validation texts (export's parity check reads it)
  baseline.json      the linear baseline's metrics on the same split
  data_checks.json   same texts with different labels, validation/test texts that repeat
                     a training text (bertclf.audit.duplicates.quick_checks)
  contrastive.json   --contrastive runs: the stage's pairs, steps, seconds and pair loss
  calibration.json   the temperature, OOD and abstain thresholds, and ECE/NLL/Brier before
                     and after (bertclf.model.calibration); ood.npz: the OOD statistics
  logs/train, logs/validation   TensorBoard event files

Nothing here imports TensorFlow, so the CLI can check a run directory at once.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from bertclf.config.run import RunConfig
from bertclf.errors import RunError
from bertclf.fileio import file_sha256, read_json, write_json, write_text
from bertclf.version import __version__

logger = logging.getLogger(__name__)

CONFIG = "config.json"
LABELS = "labels.txt"
VOCAB = "vocab.txt"
BEST_WEIGHTS = "best.weights.h5"
THRESHOLDS = "thresholds.json"
CHECKPOINTS = "checkpoints"
HISTORY = "history.json"
SAMPLES = "samples.json"
BASELINE = "baseline.json"
DATA_CHECKS = "data_checks.json"
CONTRASTIVE = "contrastive.json"
SAMPLE_SIZE = 64  # validation texts kept for export's parity check
LOGS = "logs"


def check_run_dir(out: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse (RunError) what `prepare_run_dir` would refuse, changing nothing."""
    path = Path(out)
    if resume and overwrite:
        raise RunError(f"{path}: --resume and --overwrite contradict each other; pick one")
    if resume:
        if not (path / CONFIG).is_file():
            raise RunError(f"{path}: no run to resume (no {CONFIG}); drop --resume to start one")
        read_meta(path)
    elif path.exists() and not overwrite:
        if not path.is_dir():
            raise RunError(
                f"{path}: is a file, not a run directory; choose another --out, or "
                "--overwrite to replace the file"
            )
        if any(path.iterdir()):
            raise RunError(
                f"{path}: already exists; pass --resume to continue that run or --overwrite "
                "to replace it"
            )


def prepare_run_dir(out: str | Path, resume: bool, overwrite: bool) -> Path:
    """Create `out`, or accept it for --resume; never replace a run silently."""
    check_run_dir(out, resume, overwrite)
    path = Path(out)
    if resume:
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):  # with --overwrite
        logger.warning("--overwrite: deleting the existing run %s", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{path}: cannot create the run directory ({e.strerror})") from e
    return path


def write_run_files(
    path: Path,
    config: RunConfig,
    labels: list[str],
    encoder: dict[str, str],
    backbone,
    tokenizer,
    samples: list[str],
    excluded: list[str] = (),
) -> dict[str, Any]:
    """Write config.json, labels.txt, vocab.txt and samples.json (each atomically).

    `excluded`: the training texts `--exclude` dropped (their sources), recorded in
    config.json beside the file that named them.

    The label names live in labels.txt only (the file the export ships as its asset);
    `read_meta` puts them in the description it returns. `samples` (validation texts)
    travel with the run, so that a run copied elsewhere still exports with a parity
    check on real texts.
    """
    write_json(path / SAMPLES, {"texts": list(samples[:SAMPLE_SIZE])})
    meta = {
        "bertclf_version": __version__,
        "config": config.to_dict(),
        "encoder": encoder,
        "backbone": backbone.get_config(),
        "tokenizer": {"vocabulary": VOCAB, "lowercase": bool(tokenizer.lowercase)},
    }
    if excluded:
        meta["excluded"] = list(excluded)
    write_text(path / VOCAB, "\n".join(tokenizer.get_vocabulary()) + "\n")
    write_text(path / LABELS, "\n".join(labels) + "\n")
    write_json(path / CONFIG, meta)
    return {**meta, "labels": list(labels)}


def read_labels(path: Path) -> list[str]:
    """The label names of a run, in output order (labels.txt, one per line)."""
    return [line for line in (path / LABELS).read_text(encoding="utf-8").split("\n") if line]


def read_meta(path: str | Path) -> dict[str, Any]:
    """A run's config.json with its labels, or a one-line RunError when either is damaged."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise RunError(
            f"{path}: not a bertclf run (no {CONFIG}); pass the --out folder of 'bertclf train'"
        )
    try:
        meta = read_json(path / CONFIG)
        RunConfig.from_dict(meta["config"])
        if "backbone" not in meta or "tokenizer" not in meta:
            raise KeyError("backbone")
        if (path / LABELS).is_file() or "labels" not in meta:  # older runs: config.json
            meta["labels"] = read_labels(path)
        if len(meta["labels"]) < 2:
            raise ValueError(f"{len(meta['labels'])} labels in {LABELS}")
    except (ValueError, KeyError, TypeError, OSError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else f"{type(e).__name__}: {e}"
        raise RunError(
            f"{path / CONFIG}: damaged ({reason}); restore it from a copy of the run, "
            "or train again with --overwrite"
        ) from None
    return meta


def check_trained(path: str | Path) -> dict[str, Any]:
    """A run that can be loaded: config.json readable, best weights present and whole.

    The weights file is opened with h5py (no TensorFlow), so a truncated or empty file
    is reported at once, as one line.
    """
    path = Path(path)
    meta = read_meta(path)
    weights = path / BEST_WEIGHTS
    if not weights.is_file():
        raise RunError(
            f"{path}: no {BEST_WEIGHTS} (training has not finished an epoch); "
            "train it to the end or resume it with --resume"
        )
    import h5py

    try:
        with h5py.File(weights, "r") as f:
            f.visit(lambda name: None)  # walks every group: a cut file fails here
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ... for damage
        raise RunError(
            f"{weights}: unreadable ({type(e).__name__}); the file is truncated or "
            "damaged: train again with --overwrite, or --resume to redo the last epoch"
        ) from None
    if (path / THRESHOLDS).is_file():
        _check_thresholds_match(path / THRESHOLDS, weights)
    return meta


def _weights_digest(weights: Path) -> str:
    """The SHA-256 of a weights file, computed once per version of the file: a command
    checks a run before it loads it, and both check the thresholds. A kept epoch is
    published by a rename, which gives the path a new inode and so a new digest."""
    st = weights.stat()
    return _digest(str(weights.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _digest(path: str, inode: int, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _check_thresholds_match(thresholds: Path, weights: Path) -> None:
    """Kept weights and their thresholds are two files, so two renames: a run stopped
    between them holds thresholds tuned for other weights. (Runs made before the
    thresholds named their weights are taken as they are.)"""
    stored = read_json(thresholds)
    expected = stored.get("weights_sha256") if isinstance(stored, dict) else None
    if expected is not None and expected != _weights_digest(weights):
        raise RunError(
            f"{thresholds}: tuned for other weights than {weights.name} (training stopped "
            f"while keeping epoch {stored.get('epoch')}); resume the run with --resume to "
            "redo that epoch"
        )
