"""What bertclf prints on stderr: TensorFlow's start-up noise kept off, bertclf's own lines on.

TensorFlow 2.21 logs through absl before `absl::InitializeLog()` runs, and those
lines go to file descriptor 2 whatever `TF_CPP_MIN_LOG_LEVEL` says (a CPU machine
gets "failed call to cuInit" at error level, for one). `StderrFilter` points fd 2 at
a pipe and copies what arrives to the real stderr, dropping only the known start-up
lines listed below; every other line, Python's own and TensorFlow's real errors
included, passes through. Progress bars keep working: a segment is passed on at each
carriage return as well as at each newline. `bertclf -v` turns the filter off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading

# absl's prefix: severity, date, time, thread id, then "file.cc:LINE] message".
_ABSL = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+):\d+\] (.*)$")
# Known start-up noise at warning or error level: (file pattern, message pattern).
_KNOWN = [
    (r"cuda_(platform|executor|diagnostics)\.cc", r"(failed call to cuInit|kernel driver)"),
    (r"cudart_stub\.cc", r""),
    (r"cuda_(dnn|fft|blas)\.cc", r"Unable to register"),
    (r"computation_placer\.cc", r"already registered"),
    (r"cpu_feature_guard\.cc", r"optimized to use available CPU instructions"),
    (r"loop_optimizer\.cc", r"Skipping loop optimization"),
    (r"[\w.]+", r"oneDNN (supports DT_INT64 only|custom operations are on)"),
]
_PLAIN = [
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    r"compiler flags\.$",
]
_KNOWN_RE = [(re.compile(f), re.compile(m)) for f, m in _KNOWN]
_PLAIN_RE = [re.compile(p) for p in _PLAIN]


def is_noise(line: str) -> bool:
    """Whether `line` (without its line ending) is known TensorFlow start-up noise."""
    line = line.rstrip("\r\n")
    if any(p.match(line) for p in _PLAIN_RE):
        return True
    m = _ABSL.match(line)
    if m is None:
        return False
    severity, source, message = m.groups()
    if severity == "I":  # informational: never what a user needs to act on
        return True
    return any(f.fullmatch(source) and msg.search(message) for f, msg in _KNOWN_RE)


class StderrFilter:
    """Filter file descriptor 2 through `is_noise` until `close()` (a context manager)."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)  # the real stderr
        self.terminal = os.isatty(self._saved)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while chunk := os.read(self._read_end, 65536):
            pending += chunk
            # Pass on each complete segment: ended by a newline, or by a carriage return
            # (a progress bar redrawing its line).
            cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
            if cut:
                self._emit(pending[:cut])
                pending = pending[cut:]
        if pending:
            self._emit(pending)
        os.close(self._read_end)

    def _emit(self, data: bytes) -> None:
        kept = [
            seg
            for seg in re.split(rb"(?<=[\r\n])", data)
            if seg and not is_noise(seg.decode("utf-8", "replace"))
        ]
        if kept:
            os.write(self._saved, b"".join(kept))

    def close(self) -> None:
        """Put the real stderr back on fd 2 and pass on whatever is still in the pipe."""
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # the pipe's last write end closes: the pump sees EOF
        self._thread.join(timeout=5)
        os.close(self._saved)

    def __enter__(self) -> StderrFilter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Whether the program had configured logging when bertclf was first imported (before
# TensorFlow, whose import may install handlers of its own): then its configuration decides.
USER_LOGGING = bool(logging.getLogger().handlers or logging.getLogger("bertclf").handlers)
_ACTIVE: list[StderrFilter] = []  # the filter in place, if any (the CLI's, or quiet()'s)


def filter_stderr() -> StderrFilter | None:
    """Start filtering fd 2, where it is a real file descriptor (not under pytest's capsys)
    and no filter runs yet; None otherwise."""
    if _ACTIVE:
        return None
    try:
        if sys.stderr.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    noise = StderrFilter()
    _ACTIVE.append(noise)
    return noise


def stop_filtering() -> None:
    """The real stderr back on fd 2, whatever filter runs: before this process is replaced
    (`os.execv`), whose new program would otherwise write into a pipe nobody reads."""
    for noise in list(_ACTIVE):
        noise.close()


@contextlib.contextmanager
def quiet():
    """The same filter around one library call (the Python API's `train`, `evaluate`,
    `load_run` and the first import of TensorFlow), then fd 2 as it was: the user's own
    stderr and logging are left alone outside the call. `BERTCLF_VERBOSE=1` turns it off."""
    noise = None if os.environ.get("BERTCLF_VERBOSE") else filter_stderr()
    try:
        yield
    finally:
        if noise is not None:
            noise.close()


@contextlib.contextmanager
def shown(verbose: bool):
    """bertclf's own lines (labels, split, budget, the baseline, each epoch, the kept one)
    on stderr during one API call, as the CLI shows them, unless the caller configured
    logging or set the "bertclf" logger's level (then theirs decides: the CLI sets it from
    --quiet) or passed `verbose=False`. Nothing stays configured after the call."""
    logger = logging.getLogger("bertclf")
    if not verbose or logger.handlers or logger.level != logging.NOTSET or USER_LOGGING:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("bertclf: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    # Not also through the root handler a library may have installed (absl, Keras).
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved


def stderr_is_terminal() -> bool:
    """Whether the user's stderr is a terminal, also while the filter stands in for it
    (a pipe, to everyone who asks fd 2): progress bars are drawn only there."""
    if _ACTIVE:
        return _ACTIVE[0].terminal
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
