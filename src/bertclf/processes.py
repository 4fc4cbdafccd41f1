"""Child processes that must not outlive the process that started them.

The fresh-process check of an export and each served version's model process run
TensorFlow in a child; if the parent is killed, the child must go too, or it would
hold memory (and, for the check, a temporary version) with nobody to wait for it.

May import: nothing of bertclf.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time


def die_with_parent(parent: int) -> None:
    """Exit when the exporting process is gone (prctl on Linux, else a watcher thread)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
