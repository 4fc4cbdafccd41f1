"""Small helpers for writing files atomically (write to a temporary path, then rename).

Temporary files and directories (`tempfile.mkstemp`/`mkdtemp`) are private (0600/0700)
whatever the umask. Everything bertclf publishes (runs, exports, archives) is read by
other users too, a TF Serving process running as another user among them, so before a
temporary path is renamed into place it gets the modes any file the user writes gets:
0666/0777 less the process umask (0644/0755 under umask 022).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import resource
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def publish_modes(path: str | os.PathLike) -> None:
    """Give `path` (and, for a directory, everything under it) the umask's default modes."""
    path = Path(path)
    mask = current_umask()
    if not path.is_dir():
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~mask)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` on success.

    On an exception the temporary file is removed and `target` is untouched, so a
    reader never sees a half-written file. The published file follows the umask.
    The temporary name holds the process id (`.NAME.pidN.XXXX.tmp`), so that a later
    run can tell the leftovers of a killed process (`remove_stale_temps`).

    Args:
        target: final path.
        suffix: suffix for the temporary name (some writers, such as Keras'
            `save_weights`, insist on a particular file ending).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.pid{os.getpid()}.", suffix=f".tmp{suffix}", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish_modes(tmp_path)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def ensure_room(path: str | os.PathLike, nbytes: int) -> None:
    """Raise the OSError a write of `nbytes` to `path` would meet (ENOSPC: the disk is
    too full; EFBIG: over the process' file-size limit) before writing anything.

    HDF5, behind Keras' `.weights.h5`, can crash the process on a refused write instead
    of raising, so a writer of it asks first.
    """
    path = Path(path)
    if shutil.disk_usage(path.parent).free < nbytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < nbytes:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (on this host)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of `atomic_path` left in `directory` by killed processes."""
    removed = []
    for path in Path(directory).glob(".*.pid*.*"):
        match = re.search(r"\.pid(\d+)\.", path.name)
        if match and ".tmp" in path.name and not pid_alive(int(match.group(1))):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_text(target: str | os.PathLike, text: str) -> None:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `target` atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
