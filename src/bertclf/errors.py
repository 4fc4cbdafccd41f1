"""User-facing errors.

Every failure caused by the user's input (a path, a field, a value) is raised as a
subclass of `BertclfError`. The CLI prints its message as one line on stderr and
exits with status 2; the Python API lets it propagate. Messages name the bad
value and say what to do about it.
"""


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
