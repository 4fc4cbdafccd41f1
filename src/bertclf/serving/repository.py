"""Model versions under a base path, loaded, polled and swapped as TF Serving does.

BASE/NAME/VERSION/ with numeric VERSION: the highest version of each model is
served. A poll (default every second) loads a newer version in its own process
(`worker.py`), warms it up, then switches to it atomically; requests already under
way finish on the version they started on, and the old version's process then exits,
giving its memory back. A version that fails to load is logged, shown in the model's
status (state END with the error, as TF Serving shows it) and retried when its
directory changes (a copy that was caught half-done) or after a back-off; the current
version keeps serving meanwhile. Names that are not version numbers are ignored.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertclf import servable
from bertclf.serving.batcher import Batcher
from bertclf.serving.config import ServeConfig
from bertclf.serving.errors import Internal, NotFound
from bertclf.serving.worker import ModelWorker, WorkerError

logger = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 2.0, 300.0  # seconds: back-off for a version that failed to load


@dataclass
class BatchSettings:
    """How a version's batcher merges requests (defaults: `ServeConfig`'s)."""

    max_batch: int = ServeConfig.max_batch
    max_wait: float = ServeConfig.max_wait_ms / 1000
    max_queue: int = ServeConfig.max_queue


@dataclass
class LoadedVersion:
    """One version, served from its own process, and its batcher."""

    name: str
    version: int
    path: Path
    worker: ModelWorker
    batcher: Batcher | None = None

    @property
    def signatures(self) -> dict[str, Any]:
        return self.worker.signatures

    @functools.cached_property
    def labels(self) -> tuple[list[str], bool]:
        """(label names in order, multi-label?), from the version's files (for :explain)."""
        meta_file = self.path / servable.METADATA
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        return servable.read_labels(self.path), meta.get("task") == "multilabel"

    def run(self, signature: str, texts: list[bytes]) -> dict[str, np.ndarray]:
        """One model call (blocking; in the model thread): texts -> {output: rows}."""
        try:
            return self.worker.run(signature, texts)
        except WorkerError as e:
            raise Internal(f"the model call failed: {e}") from None


@dataclass
class FailedVersion:
    """A version that did not load: why, and when to try again."""

    error: str
    fingerprint: tuple
    attempts: int = 1
    retry_at: float = 0.0


def fingerprint(path: Path) -> tuple:
    """What changes when files are added to or rewritten in a version directory."""
    try:
        return tuple(
            sorted(
                (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                for p in path.rglob("*")
            )
        )
    except OSError:
        return ()


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


def _missing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if not p.exists()]


@dataclass
class ModelRepository:
    """The models being served, keyed by name; `poll()` keeps them current."""

    base: Path
    single_name: str | None = None
    batching: BatchSettings = field(default_factory=BatchSettings)
    on_batch: Callable[[int], None] | None = None
    models: dict[str, LoadedVersion] = field(default_factory=dict)
    failed: dict[Path, FailedVersion] = field(default_factory=dict)

    def __post_init__(self):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader")
        self.base_missing = False
        self.polls = 0

    def get(self, name: str, version: int | None = None) -> LoadedVersion:
        loaded = self.models.get(name)
        if loaded is None or (version is not None and version != loaded.version):
            spec = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {spec}")
        return loaded

    def status(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        """TF Serving's version states: the served one AVAILABLE, failed ones END + error."""
        rows = []
        loaded = self.models.get(name)
        if loaded is not None:
            rows.append({"version": loaded.version, "state": "AVAILABLE", "error": ""})
        for path, failure in self.failed.items():
            number = servable.parse_version(path.name)
            if self._model_of(path) == name and number is not None:
                rows.append({"version": number, "state": "END", "error": failure.error})
        if version is not None:
            rows = [r for r in rows if r["version"] == version]
            if not rows:
                raise NotFound(f"Could not find version {version} of model {name}")
        if not rows:
            raise NotFound(f"Could not find any versions of model {name}")
        return sorted(rows, key=lambda r: -r["version"])

    def _model_of(self, path: Path) -> str:
        return self.single_name if self.single_name is not None else path.parent.name

    def _due(self, path: Path, now: float) -> bool:
        """Whether to (re)try loading `path`: never tried, changed, or back-off over."""
        failure = self.failed.get(path)
        if failure is None:
            return True
        return fingerprint(path) != failure.fingerprint or now >= failure.retry_at

    async def _scan(self) -> dict[str, tuple[int, Path]] | None:
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self.loader, scan, self.base, self.single_name)
        except OSError as e:
            if not self.base_missing:
                logger.error(
                    "%s is not readable (%s); still serving what is loaded", self.base, e.strerror
                )
            self.base_missing = True
            return None
        if self.base_missing:
            logger.info("%s is readable again", self.base)
            self.base_missing = False
        if not found and not self.models and self.polls == 0:
            logger.warning(
                "%s holds no model yet (no NAME/VERSION/saved_model.pb); serving none until "
                "one is exported there",
                self.base,
            )
        self.polls += 1
        return found

    async def poll(self) -> None:
        """Load whatever is newer on disk; unload models whose directory is gone."""
        found = await self._scan()
        if found is None:
            return
        # A failed version whose directory was removed is no longer a version (its END row
        # would otherwise stay in the status until the server restarts).
        loop = asyncio.get_running_loop()
        gone = await loop.run_in_executor(self.loader, _missing, list(self.failed))
        for path in gone:
            logger.info("%s is gone; no longer listed as a failed version", path)
            del self.failed[path]
        for name, (version, path) in found.items():
            current = self.models.get(name)
            fresh = current is not None and current.version == version and current.worker.alive
            if fresh or not self._due(path, time.monotonic()):
                continue
            loaded = await self._load(name, version, path, current)
            if loaded is not None:
                await self._swap(loaded)
        for name in set(self.models) - set(found):
            logger.info("model %s is gone from %s; unloading it", name, self.base)
            await self._unload(self.models.pop(name))

    async def _load(self, name, version, path, current) -> LoadedVersion | None:
        loop = asyncio.get_running_loop()
        failure = self.failed.get(path)
        try:
            worker = await loop.run_in_executor(self.loader, ModelWorker, path)
        except WorkerError as e:
            attempts = failure.attempts + 1 if failure else 1
            delay = min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_MAX)
            self.failed[path] = FailedVersion(
                str(e), fingerprint(path), attempts, time.monotonic() + delay
            )
            logger.error(
                "model %s version %d at %s failed to load (attempt %d: %s); still serving %s; "
                "retrying when the directory changes, or in %.0f s",
                name,
                version,
                path,
                attempts,
                e,
                f"version {current.version}" if current else "nothing",
                delay,
            )
            return None
        if failure is not None:
            attempt = failure.attempts + 1
            logger.info("model %s version %d loaded (attempt %d)", name, version, attempt)
        self.failed.pop(path, None)
        return LoadedVersion(name, version, path, worker)

    async def _swap(self, loaded: LoadedVersion) -> None:
        s = self.batching
        loaded.batcher = Batcher(
            loaded.run, self.executor, s.max_batch, s.max_wait, s.max_queue, on_batch=self.on_batch
        )
        old = self.models.get(loaded.name)
        self.models[loaded.name] = loaded  # the switch: new requests go to the new version
        logger.info("serving model %s version %d from %s", loaded.name, loaded.version, loaded.path)
        if old is not None:
            await self._unload(old)
            logger.info("unloaded model %s version %d", old.name, old.version)

    async def _unload(self, old: LoadedVersion) -> None:
        """Answer what the old version has queued, then end its process."""
        await old.batcher.close()
        await asyncio.get_running_loop().run_in_executor(self.loader, old.worker.close)

    async def close(self) -> None:
        for loaded in list(self.models.values()):
            await self._unload(loaded)
        self.models.clear()

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - keep polling whatever one scan hit
                logger.exception("polling %s failed", self.base)
