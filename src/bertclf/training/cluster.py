"""Multi-worker training: the TF_CONFIG cluster, the chief, and a local launcher.

`bertclf train --strategy multiworker` (or any run whose TF_CONFIG names a cluster of
several tasks) trains under `tf.distribute.MultiWorkerMirroredStrategy`: one process
per worker, each with TF_CONFIG naming the cluster and its own task, as Kubernetes'
Indexed Jobs, Kubeflow's TFJob or `--local-workers N` set it. The loop is the same; the
global batch is split across the workers and their gradients summed, so N workers train
the model one worker trains with the same `--batch-size` (tests/test_cluster.py).
Only the chief writes the run directory; the other workers write theirs to a temporary
folder that is removed when they finish. A collective of training that waits longer
than `PEER_TIMEOUT` seconds for a peer (set BERTCLF_PEER_TIMEOUT) fails the run with
one line; so does a worker that has not started by then (`rendezvous`, before
TensorFlow's own start-up, which would wait for it forever).

Preemption: a SIGTERM to any worker makes every worker checkpoint at the same step and
exit with `PREEMPTED` (42), the status a Job restarts on; `--resume` then continues from
that checkpoint (and `--checkpoint-every N` bounds what a SIGKILL loses). Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bertclf.errors import ConfigError

logger = logging.getLogger(__name__)

PEER_TIMEOUT = float(os.environ.get("BERTCLF_PEER_TIMEOUT", "300"))
PREEMPTED = 42  # the exit status of a worker that checkpointed on SIGTERM: restart it
NEEDS_TF_CONFIG = (
    "--strategy multiworker needs TF_CONFIG naming the cluster; set it, or try it on this "
    "machine with --local-workers N"
)


@dataclass(frozen=True)
class Task:
    """This process's place in a TF_CONFIG cluster."""

    cluster: dict[str, list[str]]
    type: str
    index: int

    @property
    def workers(self) -> int:
        return sum(len(v) for k, v in self.cluster.items() if k in ("chief", "worker"))

    @property
    def chief(self) -> tuple[str, str, int]:
        """(name, host, port) of the chief: the `chief` task, else worker 0."""
        kind = "chief" if "chief" in self.cluster else "worker"
        host, _, port = self.cluster[kind][0].rpartition(":")
        return f"{kind} 0", host.strip("[]"), int(port)

    @property
    def peers(self) -> dict[str, str]:
        """Every other worker task: 'worker 1' -> its address."""
        return {
            f"{kind} {i}": address
            for kind in ("chief", "worker")
            for i, address in enumerate(self.cluster.get(kind, []))
            if (kind, i) != (self.type, self.index)
        }

    @property
    def is_chief(self) -> bool:
        """The chief task, or worker 0 when the cluster has no chief (TF's rule)."""
        if "chief" in self.cluster:
            return self.type == "chief"
        return self.type == "worker" and self.index == 0


def read_tf_config(raw: str | None = None) -> Task | None:
    """TF_CONFIG (the environment's unless `raw` is given) -> Task; None when unset.

    ConfigError, naming what is wrong, for anything TensorFlow would misread.
    """
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e.msg}); see deploy/DEPLOY.md") from None
    cluster, task = (doc.get("cluster"), doc.get("task")) if isinstance(doc, dict) else (0, 0)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError('TF_CONFIG needs "cluster" and "task" objects; see deploy/DEPLOY.md')
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind)
    if not isinstance(members, list) or not isinstance(index, int):
        raise ConfigError(
            f"TF_CONFIG task {task} is not in its cluster (task types: {sorted(cluster)}); "
            'give "task": {"type": ..., "index": ...} of one of them'
        )
    if not 0 <= index < len(members):
        raise ConfigError(
            f"TF_CONFIG task index {index} is outside {kind!r} (0..{len(members) - 1})"
        )
    return Task({k: list(v) for k, v in cluster.items()}, kind, index)


def rendezvous(task: Task, timeout: float = PEER_TIMEOUT) -> None:
    """Return once every worker of the cluster runs; ConfigError after `timeout` seconds.

    TensorFlow's start-up waits for every peer with no deadline, inside C++ where no
    signal reaches it, so a worker that never starts would hang the others. Before it,
    the chief listens on its own cluster port (and releases it for TensorFlow); every
    other worker connects and says who it is; once all have, the chief answers `go`.
    """
    if task.is_chief:
        _gather(task, time.monotonic() + timeout, timeout)
    else:
        _join(task, time.monotonic() + timeout, timeout)


def _gather(task: Task, deadline: float, timeout: float) -> None:
    name, _, port = task.chief
    waiting, joined = dict(task.peers), []
    try:
        server = socket.create_server(("", port))
    except OSError as e:
        raise ConfigError(
            f"TF_CONFIG: {name} cannot listen on its port {port} ({e.strerror}); free the "
            "port or give it another one"
        ) from None
    with server, contextlib.ExitStack() as stack:
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = ", ".join(f"{k} ({v})" for k, v in waiting.items())
                raise ConfigError(
                    f"{missing} did not join {name} within {timeout:.0f} s "
                    "(BERTCLF_PEER_TIMEOUT): start every worker TF_CONFIG names, and check "
                    f"that each reaches port {port} of {name}"
                )
            server.settimeout(left)
            with contextlib.suppress(TimeoutError):
                conn = stack.enter_context(server.accept()[0])
                conn.settimeout(5)
                hello = _read_line(conn)
                if waiting.pop(hello, None) is not None:
                    joined.append(conn)
        for conn in joined:
            conn.sendall(b"go\n")
        for conn in joined:  # the worker closes first (its side keeps the TIME_WAIT)
            _read_line(conn)


def _join(task: Task, deadline: float, timeout: float) -> None:
    name, host, port = task.chief
    me = f"{task.type} {task.index}"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConfigError(
                f"{me}: {name} ({host}:{port}) did not answer within {timeout:.0f} s "
                "(BERTCLF_PEER_TIMEOUT): start every worker TF_CONFIG names, and check "
                "that this one reaches it"
            )
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 5))
            break
        except OSError:
            time.sleep(min(0.5, left))
    with conn:
        conn.sendall(f"{me}\n".encode())
        conn.settimeout(timeout + 5)  # the chief decides first: it started waiting earlier
        answer = _read_line(conn)
    if answer != "go":
        raise ConfigError(
            f"{me}: {name} ({host}:{port}) did not start the cluster (a worker is missing, "
            "or the chief is already training): restart every worker together"
        )


def _read_line(conn: socket.socket) -> str:
    """One short line from `conn` ('' on a timeout, a closed connection or garbage)."""
    data = b""
    with contextlib.suppress(OSError):
        while b"\n" not in data and len(data) < 64:
            chunk = conn.recv(64)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n")[0].decode("ascii", "replace") if b"\n" in data else ""


def exit_preempted() -> None:
    """The preemption handler's exit, once this worker's checkpoint is saved."""
    logger.warning(
        "preempted: checkpoint saved; run the same command with --resume to continue "
        "(exit status %d)",
        PREEMPTED,
    )
    sys.exit(PREEMPTED)


def worker_out(out: str, task: Task | None) -> tuple[str, bool]:
    """(where this process writes its run, whether it is a scratch folder to remove)."""
    if task is None or task.is_chief:
        return out, False
    return tempfile.mkdtemp(prefix=f"bertclf-{task.type}{task.index}-"), True


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch_local(argv: list[str], workers: int) -> int:
    """`bertclf train ... --local-workers N`: N worker processes on loopback ports.

    Each runs `bertclf train` with the same arguments, `--strategy multiworker` and its
    TF_CONFIG; the chief's output goes to this terminal, the others' are kept in case
    one fails. Returns the chief's exit status; if any worker fails, the rest are
    stopped (a peer would wait for it) and its last line is printed. A SIGTERM is
    passed on to every worker: they checkpoint at the same step, and this returns 42.
    """
    if workers < 1:
        raise ConfigError(f"--local-workers {workers} is invalid: use 1 or more")
    hosts = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    procs = []
    with contextlib.ExitStack() as stack:
        logs = [None] + [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in hosts[1:]]
        for index, log in enumerate(logs):
            config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CONFIG": json.dumps(config)}
            cmd = [sys.executable, "-m", "bertclf", "train", *argv, "--strategy", "multiworker"]
            procs.append(
                subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
            )
        # A SIGTERM here (a scheduler's, or kill): every worker checkpoints and exits 42.
        previous = signal.signal(signal.SIGTERM, lambda *_: _signal_all(procs, signal.SIGTERM))
        try:
            return _wait(procs, logs)
        finally:
            signal.signal(signal.SIGTERM, previous)
            _signal_all(procs, signal.SIGKILL)
            for p in procs:
                p.wait()


def _signal_all(procs, signum) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signum)


def _wait(procs, logs) -> int:
    while True:
        codes = [p.poll() for p in procs]
        if PREEMPTED in codes:  # the others are checkpointing at the same step: let them
            with contextlib.suppress(subprocess.TimeoutExpired):
                for p in procs:
                    p.wait(timeout=PEER_TIMEOUT)
            return PREEMPTED
        failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            i = failed[0]
            if logs[i] is not None:
                logs[i].seek(0)
                last = [ln for ln in logs[i].read().splitlines() if ln.strip()][-1:]
                print(
                    f"bertclf: worker {i} failed: {last[0] if last else codes[i]}", file=sys.stderr
                )
            return codes[0] if codes[0] not in (None, 0) else 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def local_argv(argv: list[str]) -> list[str]:
    """The train arguments without `--local-workers N` (and any `--strategy`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--local-workers", "--strategy"):
            skip = True
            continue
        if arg.startswith(("--local-workers=", "--strategy=")):
            continue
        out.append(arg)
    return out


def remove_scratch(path: str) -> None:
    import shutil

    shutil.rmtree(Path(path), ignore_errors=True)
