"""Server-side dynamic batching: concurrent requests merged into one model call.

Requests wait in a bounded queue; one worker takes the first, gathers more for
up to `max_wait` seconds or until `max_batch` inputs, runs the model once in a
worker thread (off the event loop), and hands each request its rows.

A request larger than `max_batch` is split into chunks of `max_batch` that queue one
after another, so requests arriving meanwhile get their turn between its chunks
instead of waiting behind all of it. When a merged model call fails, each request
in it is run again on its own: a request never sees another request's error (which
may quote that request's input), only its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from bertclf.serving.config import ServeConfig
from bertclf.serving.errors import ResourceExhausted, Unavailable

logger = logging.getLogger(__name__)

RunFn = Callable[[str, list[bytes]], dict[str, np.ndarray]]


@dataclass
class _Pending:
    signature: str
    inputs: list[bytes]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Merge `submit()` calls for one model version into batched `run()` calls.

    Args:
        run: (signature name, inputs) -> {output name: array with one row per input}.
        executor: where model calls run (one thread: calls never overlap).
        max_batch: most inputs in one model call.
        max_wait: under concurrent load, seconds a batch waits for more requests.
        max_queue: most inputs waiting; beyond it `submit()` raises ResourceExhausted (429).
        on_batch: callback(batch_size) for metrics.
    """

    def __init__(
        self,
        run: RunFn,
        executor: Executor,
        max_batch: int = ServeConfig.max_batch,
        max_wait: float = ServeConfig.max_wait_ms / 1000,
        max_queue: int = ServeConfig.max_queue,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.run, self.executor = run, executor
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self.on_batch = on_batch or (lambda n: None)
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.queued_inputs = 0  # waiting for a model call (the 429 bound, the queue gauge)
        self.unanswered = 0  # submitted and not yet answered (what close() waits for)
        self.closing = False
        self._carry: _Pending | None = None  # taken from the queue, did not fit the last batch
        self._last_batch_requests = 0
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, signature: str, inputs: list[bytes]) -> dict[str, np.ndarray]:
        """The model's outputs for `inputs`, one row per input, in order."""
        if self.closing:
            raise Unavailable("this model version is being unloaded; retry")
        if self.queued_inputs + len(inputs) > self.max_queue:
            raise ResourceExhausted(
                f"the server is overloaded: {self.queued_inputs} inputs are queued (limit "
                f"{self.max_queue}); retry later or send fewer texts at once"
            )
        self.queued_inputs += len(inputs)
        self.unanswered += 1
        taken = 0
        try:
            parts = []
            for start in range(0, len(inputs), self.max_batch):
                chunk = inputs[start : start + self.max_batch]
                future = asyncio.get_running_loop().create_future()
                await self.queue.put(_Pending(signature, chunk, future))
                taken += len(chunk)  # counted off the queue when the worker takes it
                parts.append(await future)
            if len(parts) == 1:
                return parts[0]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        finally:
            self.queued_inputs -= len(inputs) - taken  # chunks never queued (a failure)
            self.unanswered -= 1

    async def _gather(self) -> list[_Pending]:
        """The first waiting request and whatever joins it within max_wait.

        Adaptive: after a batch of one request (a lone client) nothing is waited for,
        so an idle server adds no latency; under concurrent load (the last batch
        merged several requests) a batch waits up to max_wait to fill up.
        """
        first, self._carry = (self._carry, None) if self._carry else (await self.queue.get(), None)
        batch, size = [first], len(first.inputs)
        wait = self.max_wait if self._last_batch_requests > 1 else 0.0
        deadline = time.perf_counter() + wait
        while size < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                item = (
                    self.queue.get_nowait()
                    if remaining <= 0
                    else await asyncio.wait_for(self.queue.get(), remaining)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if item.signature != first.signature or size + len(item.inputs) > self.max_batch:
                self._carry = item  # first in line for the next batch
                break
            batch.append(item)
            size += len(item.inputs)
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self._gather()
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        inputs = [x for p in batch for x in p.inputs]
        self.queued_inputs -= len(inputs)
        self._last_batch_requests = len(batch)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(
                self.executor, self.run, batch[0].signature, inputs
            )
        except Exception as e:  # noqa: BLE001 - handed to the requests, never mixed
            if len(batch) > 1:
                for p in batch:  # one at a time: each request gets only its own outcome
                    await self._run_alone(p)
            elif not batch[0].future.done():
                batch[0].future.set_exception(e)
            return
        self.on_batch(len(inputs))
        start = 0
        for p in batch:
            rows = slice(start, start + len(p.inputs))
            if not p.future.done():
                p.future.set_result({k: v[rows] for k, v in outputs.items()})
            start += len(p.inputs)

    async def _run_alone(self, p: _Pending) -> None:
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self.executor, self.run, p.signature, p.inputs)
        except Exception as e:  # noqa: BLE001 - this request's own failure
            if not p.future.done():
                p.future.set_exception(e)
            return
        self.on_batch(len(p.inputs))
        if not p.future.done():
            p.future.set_result(outputs)

    async def close(self) -> None:
        """Stop taking requests, answer every submitted one, then stop the worker."""
        self.closing = True
        while self.unanswered > 0:
            await asyncio.sleep(0.01)
        self.worker.cancel()
