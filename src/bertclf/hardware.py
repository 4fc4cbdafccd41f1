"""What this machine offers, and the `auto` settings resolved for it.

The rules below encode measurements (BENCHMARKS.md, bench/train_speed.py):
`auto` picks what was faster at equal accuracy on the hardware measured, and
the conservative choice elsewhere.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return frozenset()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def gpu_has_bf16() -> bool:
    """Ampere (compute capability 8.0) or newer: native bf16 tensor cores."""
    for gpu in gpus():
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if tuple(cc) < (8, 0):
            return False
    return bool(gpus())


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(choice: str) -> str:
    """`auto`: fp32.

    bf16 was measured 1.3-1.4x faster here (BENCHMARKS.md) but not at equal accuracy:
    on BBC it reached 0.9775 best validation accuracy against fp32's 0.9933, more than
    the 0.5 points allowed. So bf16 is opt-in (`--precision bf16`), on CPUs with native
    bf16 (see `cpu_has_bf16`) and on Ampere or newer GPUs.
    """
    return "fp32" if choice == "auto" else choice


def resolve_jit(choice: str, strategy: str) -> str:
    """`auto`: XLA on GPUs; on CPUs XLA was measured slower here (BENCHMARKS.md), so off."""
    if strategy == "mirrored":
        if choice == "on":
            logger.warning(
                "--jit on is not used with --strategy mirrored (XLA cannot compile "
                "the cross-replica step); training without XLA"
            )
        return "off"
    if choice != "auto":
        return choice
    return "on" if gpus() else "off"


def resolve_bucketing(choice: str) -> str:
    """`auto`: on (padding only to each batch's longest text is never slower)."""
    return "off" if choice == "off" else "on"


def apply_precision(precision: str) -> None:
    """Set Keras' global dtype policy before any layer is built."""
    keras.mixed_precision.set_global_policy(POLICIES[precision])


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The default one-device strategy, or MirroredStrategy over all local GPUs.

    Without GPUs, `mirrored` uses every logical CPU device (two logical CPUs
    are how the tests exercise it on a CPU-only machine).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        logger.warning("--strategy mirrored: no GPU found; mirroring over CPU devices %s", devices)
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return tf.distribute.MirroredStrategy(devices)
