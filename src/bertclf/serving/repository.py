"""Model versions under a base path, loaded, polled and swapped as TF Serving does.

BASE/NAME/VERSION/ with numeric VERSION: the highest version of each model is
served. A poll (default every second) loads a newer version, warms it up, then
switches to it atomically; requests already under way finish on the version they
started on, and the old version is unloaded after them. A version that fails to
load is logged and the current one keeps serving. Non-numeric directories (such
as an export still in progress) are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertclf import servable
from bertclf.serving.batcher import Batcher
from bertclf.serving.errors import NotFound

logger = logging.getLogger(__name__)


@dataclass
class BatchSettings:
    max_batch: int = 32
    max_wait: float = 0.002
    max_queue: int = 512


@dataclass
class LoadedVersion:
    """One loaded SavedModel version and its batcher."""

    name: str
    version: int
    path: Path
    signatures: dict[str, Any]
    model: Any
    batcher: Batcher | None = None

    def run(self, signature: str, inputs: list[bytes]) -> dict[str, np.ndarray]:
        """One model call: [n] byte strings -> {output: [n, ...] array}."""
        import tensorflow as tf

        input_name = next(iter(self.signatures[signature]["inputs"]))
        fn = self.model.signatures[signature]
        outputs = fn(**{input_name: tf.constant(inputs, tf.string)})
        return {k: v.numpy() for k, v in outputs.items()}


def load_version(name: str, version: int, path: Path) -> LoadedVersion:
    """Load and warm up a SavedModel (blocking; runs in a worker thread)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

    from bertclf.savedmodel_check import read_saved_model, signatures

    sigs = signatures(read_saved_model(path))
    loaded = LoadedVersion(name, version, path, sigs, tf.saved_model.load(str(path)))
    for key, sig in sigs.items():  # warm-up: trace and allocate before taking traffic
        sample = b"warm up"
        if sig["method_name"] == servable.CLASSIFY_METHOD:
            sample = servable.text_example(sample)
        loaded.run(key, [sample])
    return loaded


def scan(base: Path, single_name: str | None) -> dict[str, tuple[int, Path]]:
    """{model name: (latest version, its path)} as found on disk now."""
    if single_name is not None:
        model_dirs = {single_name: base}
    else:
        model_dirs = {
            p.name: p for p in base.iterdir() if p.is_dir() and servable.valid_name(p.name)
        }
    found = {}
    for name, directory in model_dirs.items():
        if servable.is_version_dir(directory):  # a bare version directory
            found[name] = (servable.parse_version(directory.name) or 1, directory)
            continue
        versions = servable.published(directory)
        if versions:
            found[name] = versions[-1]
    return found


@dataclass
class ModelRepository:
    """The models being served, keyed by name; `poll()` keeps them current."""

    base: Path
    single_name: str | None = None
    batching: BatchSettings = field(default_factory=BatchSettings)
    on_batch: Callable[[int], None] | None = None
    models: dict[str, LoadedVersion] = field(default_factory=dict)
    failed: set[Path] = field(default_factory=set)

    def __post_init__(self):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader")

    def get(self, name: str, version: int | None = None) -> LoadedVersion:
        loaded = self.models.get(name)
        if loaded is None or (version is not None and version != loaded.version):
            spec = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {spec}")
        return loaded

    def status(self, name: str, version: int | None = None) -> list[int]:
        loaded = self.models.get(name)
        if loaded is None:
            raise NotFound(f"Could not find any versions of model {name}")
        if version is not None and version != loaded.version:
            raise NotFound(f"Could not find version {version} of model {name}")
        return [loaded.version]

    async def poll(self) -> None:
        """Load whatever is newer on disk; unload models whose directory is gone."""
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self.loader, scan, self.base, self.single_name)
        for name, (version, path) in found.items():
            current = self.models.get(name)
            if (current and current.version == version) or path in self.failed:
                continue
            try:
                loaded = await loop.run_in_executor(self.loader, load_version, name, version, path)
            except Exception as e:  # noqa: BLE001 - a bad version must not stop the server
                self.failed.add(path)
                logger.error(
                    "model %s version %d at %s failed to load (%s: %s); still serving %s",
                    name,
                    version,
                    path,
                    type(e).__name__,
                    e,
                    f"version {current.version}" if current else "nothing",
                )
                continue
            await self._swap(loaded)
        for name in set(self.models) - set(found):
            logger.info("model %s is gone from %s; unloading it", name, self.base)
            old = self.models.pop(name)
            await old.batcher.close()

    async def _swap(self, loaded: LoadedVersion) -> None:
        s = self.batching
        loaded.batcher = Batcher(
            loaded.run, self.executor, s.max_batch, s.max_wait, s.max_queue, on_batch=self.on_batch
        )
        old = self.models.get(loaded.name)
        self.models[loaded.name] = loaded  # the switch: new requests go to the new version
        logger.info("serving model %s version %d from %s", loaded.name, loaded.version, loaded.path)
        if old is not None:
            await old.batcher.close()  # requests already queued finish on the old version
            logger.info("unloaded model %s version %d", old.name, old.version)

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - keep polling whatever one scan hit
                logger.exception("polling %s failed", self.base)
