"""User-facing errors.

Every failure caused by the user's input (a path, a field, a value) is raised as a
subclass of `BertclfError`. The CLI prints its message as one line on stderr and
exits with status 2; the Python API lets it propagate. Messages name the bad
value and say what to do about it.

A write that the disk refuses (full, over a quota, over a file-size limit) is not bad
input but is as plain to fix: `write_refused` recognises it, from Python's OSError or
from TensorFlow's and h5py's messages, which carry no errno, and the CLI says it in one
line with exit status 1.
"""

import errno
import os

# The C library's wording of ENOSPC, EDQUOT and EFBIG, as TensorFlow and h5py quote it.
_REFUSALS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_REFUSAL_TEXTS = tuple(os.strerror(code) for code in sorted(_REFUSALS))


class BertclfError(Exception):
    """Bad input that the user can fix. The message is one line."""

    exit_code = 2


class ConfigError(BertclfError):
    """A setting is outside its allowed range or names an unknown choice."""


class DataError(BertclfError):
    """A dataset path, file, column or label is unusable."""


class EncoderError(BertclfError):
    """The `--model` name or directory cannot be resolved or loaded."""


class RunError(BertclfError):
    """A run directory is missing, incomplete, or would be overwritten."""


class ExportError(BertclfError):
    """An export target is unusable, or the export failed verification."""


def write_refused(e: BaseException) -> str | None:
    """The C library's reason when `e` is a write the disk refused, else None.

    Example:
    >>> write_refused(OSError(errno.ENOSPC, "x"))
    'No space left on device'
    >>> write_refused(RuntimeError("SaveV2: ...; File too large [Op:SaveV2]"))
    'File too large'
    >>> write_refused(ValueError("bad")) is None
    True
    """
    if isinstance(e, OSError) and e.errno in _REFUSALS:
        return os.strerror(e.errno)
    text = str(e)
    return next((reason for reason in _REFUSAL_TEXTS if reason in text), None)


def refusal_advice(run_dir: str | None = None) -> str:
    """What to do after the disk refused a write; `run_dir`: the training run it stopped."""
    if run_dir is not None:
        return (
            f"training stopped while writing under {run_dir}; free space there (or raise "
            "the limit), then run the same command with --resume to continue from the last "
            "saved epoch"
        )
    return "free space on the disk it writes to (or raise the limit) and run it again"
