"""The batcher in-process: merging, chunking, and a failure that stays with its request."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bertclf.serving.batcher import Batcher
from bertclf.serving.errors import ResourceExhausted


class Model:
    """A stand-in model call: one row per input (its length); fails on b"poison", quoting
    the whole batch in its message as TensorFlow's ParseExample does."""

    def __init__(self):
        self.calls: list[list[bytes]] = []

    def __call__(self, signature, inputs):
        self.calls.append(list(inputs))
        if b"poison" in inputs:
            raise ValueError(f"Could not parse example input, value: {inputs!r}")
        return {"n": np.array([len(x) for x in inputs])}


def run(coro):
    return asyncio.run(coro)


def test_a_failure_in_a_merged_call_stays_with_its_request():
    model = Model()

    async def main():
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=8, max_wait=0.05)
        b._last_batch_requests = 2  # under load: the batch waits to merge
        good = asyncio.create_task(b.submit("s", [b"secret-of-A", b"xy"]))
        bad = asyncio.create_task(b.submit("s", [b"poison"]))
        done = await asyncio.gather(good, bad, return_exceptions=True)
        await b.close()
        return done, b

    (good, bad), b = run(main())
    assert model.calls[0] == [b"secret-of-A", b"xy", b"poison"]  # they were merged
    assert list(good["n"]) == [11, 2]
    assert isinstance(bad, ValueError) and b"secret-of-A" not in str(bad).encode()
    assert b.queued_inputs == 0 and b.unanswered == 0


def test_large_requests_are_split_into_max_batch_chunks_in_order():
    model = Model()

    async def main():
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=4, max_wait=0.0)
        out = await b.submit("s", [bytes(i) for i in range(10)])
        await b.close()
        return out, b

    out, b = run(main())
    assert [len(c) for c in model.calls] == [4, 4, 2]
    assert list(out["n"]) == list(range(10))
    assert b.queued_inputs == 0


def test_queue_limit_and_accounting_after_a_failure():
    model = Model()

    async def main():
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=2, max_wait=0.0, max_queue=4)
        with pytest.raises(ResourceExhausted):
            await b.submit("s", [b"a"] * 5)
        with pytest.raises(ValueError):
            await b.submit("s", [b"poison", b"a", b"b", b"c"])  # fails on its first chunk
        queued = b.queued_inputs
        await b.close()
        return queued

    assert run(main()) == 0
