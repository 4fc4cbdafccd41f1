"""One model version in its own process: loading, warm-up and every model call.

Why a process per version: TensorFlow keeps much of a loaded SavedModel for the life
of the process that loaded it (function graphs registered with the eager runtime,
kernel caches, allocator pools). Dropping the Python objects and collecting garbage
returned little of it (BENCHMARKS.md section 7: 144-181 MiB per hot swap, never freed). A
version served from its own process gives all of it back to the OS when the process
exits, so memory stays bounded however many versions are published; a crash in a
model call ends that process, not the server. The server process itself never imports
TensorFlow: it parses requests and batches them, and sends each batch here.

A version holding a model.onnx (`bertclf export --format onnx`) runs on ONNX Runtime in
its child, which then never imports TensorFlow; a SavedModel on TensorFlow: the server
neither knows nor cares, and a model may change format from one version to the next.

The child runs `python -m bertclf.serving.worker VERSION_DIR READ_FD WRITE_FD PARENT_PID`
and talks over two pipes with `multiprocessing.connection` (length-prefixed pickles):
first ("ready", signatures) or ("error", message); then, for each ("run", signature,
texts), ("ok", {output: array}) or ("error", message). It exits when the pipe closes
or the server dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from bertclf import servable


class WorkerError(Exception):
    """The model process failed a call, or is gone."""


class ModelWorker:
    """The server's handle on one version's process. Calls must not overlap."""

    def __init__(self, path: Path, timeout: float = 300.0):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bertclf.serving.worker", str(path)]
            + [str(to_child_r), str(from_child_w), str(os.getpid())],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        if not self._recv.poll(timeout):
            self.close()
            raise WorkerError(f"loading took over {timeout:.0f} s")
        status, payload = self._receive()
        if status != "ready":
            self.close()
            raise WorkerError(payload)
        self.signatures: dict[str, Any] = payload

    def _receive(self) -> tuple[str, Any]:
        try:
            return self._recv.recv()
        except (EOFError, OSError):
            code = self.proc.poll()
            raise WorkerError(f"the model process exited (status {code})") from None

    def run(self, signature: str, texts: list[bytes]) -> dict[str, np.ndarray]:
        """One model call: texts (raw; classify signatures get them as tf.Examples)."""
        try:
            self._send.send(("run", signature, texts))
        except (BrokenPipeError, OSError):
            raise WorkerError("the model process is gone") from None
        status, payload = self._receive()
        if status != "ok":
            raise WorkerError(payload)
        return payload

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 10.0) -> None:
        """End the process: its memory goes back to the OS."""
        for conn in (self._send, self._recv):
            conn.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------ the child


class _SavedModel:
    """A SavedModel version, run by TensorFlow (imported here, in the child only)."""

    def __init__(self, path: str):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

        self.tf, self.path = tf, Path(path)
        self.signatures = servable.signatures(servable.read_saved_model(self.path))
        self.model = tf.saved_model.load(path)

    def warm_up(self) -> None:
        """Trace and allocate before taking traffic: the export's TF Serving records, or,
        for an export without them, one text per signature."""
        if not servable.replay_warmup(self.model, self.path):
            for name in self.signatures:
                self.call(name, [b"warm up"])

    def call(self, signature: str, texts: list[bytes]) -> dict[str, np.ndarray]:
        sig = self.signatures[signature]
        if sig["method_name"] == servable.CLASSIFY_METHOD:
            texts = [servable.text_example(t) for t in texts]
        input_name = next(iter(sig["inputs"]))
        batch = self.tf.constant(texts, self.tf.string)
        outputs = self.model.signatures[signature](**{input_name: batch})
        return {k: v.numpy() for k, v in outputs.items()}


class _Onnx:
    """An ONNX version (`bertclf export --format onnx`), run by ONNX Runtime: this process
    never imports TensorFlow. One signature, `serving_default`, described in TensorFlow's
    terms for the REST API's metadata."""

    def __init__(self, path: str):
        self.session = servable.onnx_session(Path(path) / servable.ONNX_MODEL)
        self.num_labels = len(servable.read_labels(Path(path)))
        self.signatures = servable.onnx_signatures(self.session)

    def warm_up(self) -> None:
        self.call(servable.DEFAULT_SIGNATURE, [b"warm up", b""])

    def call(self, signature: str, texts: list[bytes]) -> dict[str, np.ndarray]:
        return servable.run_onnx(self.session, texts, self.num_labels)


def _load(path: str):
    """The version's runtime: ONNX Runtime for a model.onnx, TensorFlow otherwise."""
    return _Onnx(path) if servable.is_onnx_version(Path(path)) else _SavedModel(path)


def _serve(path: str, recv: Connection, send: Connection) -> None:
    try:
        model = _load(path)
        model.warm_up()
    except Exception as e:  # noqa: BLE001 - any load failure is reported, then we exit
        send.send(("error", f"{type(e).__name__}: {str(e).strip().splitlines()[0][:500]}"))
        return
    send.send(("ready", model.signatures))
    while True:
        try:
            message = recv.recv()
        except EOFError:
            return
        _, signature, texts = message
        try:
            send.send(("ok", model.call(signature, texts)))
        except Exception as e:  # noqa: BLE001 - the caller decides what the client sees
            send.send(("error", f"{type(e).__name__}: {str(e).strip()[:2000]}"))


def main(argv: list[str]) -> int:
    path, read_fd, write_fd, parent = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    # The server decides when this process ends (it closes the pipe once the version's
    # requests are answered): a Ctrl-C or SIGTERM to the whole process group must not
    # cut those requests short. It still dies with the server (prctl, or a watcher).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from bertclf.processes import die_with_parent

    die_with_parent(parent)
    _serve(path, Connection(read_fd, writable=False), Connection(write_fd, readable=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
