"""What this machine offers, and the `auto` settings resolved for it.

The rules below encode measurements (BENCHMARKS.md, bench/train_speed.py):
`auto` picks what was faster at equal accuracy on the hardware measured, and
the conservative choice elsewhere.
"""

from __future__ import annotations

import contextlib
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


def native_bf16() -> bool:
    """bf16 matmuls in hardware: on the GPUs if there are any, else on the CPU."""
    return gpu_has_bf16() if gpus() else cpu_has_bf16()


def resolve_precision(choice: str) -> str:
    """`auto`: bf16 mixed precision where the hardware has native bf16, else fp32.

    Measured here (BENCHMARKS.md, an AMD EPYC with AVX512_BF16): bf16 trained faster
    than fp32 on both benchmark datasets and, over three paired seeds on BBC, reached
    the validation accuracy of fp32 fixed-padding training within the 0.5 points
    allowed. Without native bf16 (older CPUs, pre-Ampere GPUs) it would be emulated
    and slower, so `auto` is fp32 there, and asking for it is warned about.
    """
    if choice == "auto":
        return "bf16" if native_bf16() else "fp32"
    if choice == "bf16" and not native_bf16():
        logger.warning(
            "--precision bf16: this hardware has no native bf16 (no AVX512_BF16/AMX CPU "
            "flag, or a GPU older than Ampere); it will likely train slower than fp32"
        )
    if choice == "fp16" and not gpus():
        logger.warning(
            "--precision fp16 on a CPU: float16 matmuls are emulated there and likely "
            "slower than fp32; use bf16 (AVX512_BF16/AMX CPUs) or fp32"
        )
    return choice


def resolve_jit(choice: str, strategy: str) -> str:
    """`auto`: XLA on GPUs; on CPUs XLA was measured slower here (BENCHMARKS.md), so off."""
    if strategy in ("mirrored", "multiworker"):
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


@contextlib.contextmanager
def precision_policy(precision: str):
    """`apply_precision` for the duration of a `with` block; the previous policy after it."""
    previous = keras.mixed_precision.global_policy()
    apply_precision(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy; a collective waiting on a peer fails after a deadline.

    The deadline (`cluster.PEER_TIMEOUT`) covers the collectives of training. The
    strategy's start-up, which waits for every TF_CONFIG worker to connect, has none:
    TensorFlow blocks there in C++ holding the GIL and deaf to SIGTERM (a registration
    deadline for its coordination service did not end the wait either, TF 2.21), so
    `cluster.rendezvous` has met every worker, with a deadline, before this runs.
    """
    from bertclf.training.cluster import PEER_TIMEOUT

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=PEER_TIMEOUT)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The default one-device strategy, or MirroredStrategy over all local GPUs.

    Without GPUs, `mirrored` uses every logical CPU device (two logical CPUs
    are how the tests exercise it on a CPU-only machine).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":  # the cluster and this task come from TF_CONFIG
        return _multi_worker_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        logger.warning("--strategy mirrored: no GPU found; mirroring over CPU devices %s", devices)
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return tf.distribute.MirroredStrategy(devices)
