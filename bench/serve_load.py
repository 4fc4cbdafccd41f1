"""Benchmark: `bertclf serve` under a bounded load on loopback vs. the bare model.

    .venv/bin/python bench/serve_load.py [--export bench/out/exports/bbc] [--max-wait-ms 0 2]

In one run: the exported model called in-process (batch 1, median of 60 calls;
batch 32, median of 10 calls), then for each --max-wait-ms a server on a free
loopback port, loaded by an asyncio client at concurrency 1, 8 and 32 with a fixed
number of single-text requests (a 40-word BBC excerpt). Reports p50/p99 latency,
throughput and errors, and the two target ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, bbc_texts, forty_words, machine, pct, timed  # noqa: E402

REQUESTS = {1: 100, 8: 240, 32: 640}


def in_process(export_dir: str, text: str) -> dict[str, float]:
    from bertclf.exported import ExportedModel

    model = ExportedModel(export_dir)
    b1 = timed(lambda: model.predict_proba([text]), repeats=60, warmup=5)
    same32 = timed(lambda: model.predict_proba([text] * 32, batch_size=32), repeats=10)
    bbc32 = bbc_texts(32)
    bbc = timed(lambda: model.predict_proba(bbc32, batch_size=32), repeats=10)
    return {
        "batch1_p50_ms": 1000 * statistics.median(b1),
        "batch32_texts_per_s": 32 / statistics.median(same32),
        "batch32_bbc_texts_per_s": 32 / statistics.median(bbc),
    }


async def load(
    url: str, text: str, concurrency: int, total: int, model: str = "bbc"
) -> dict[str, float]:
    latencies, errors = [], 0
    body = json.dumps({"instances": [text]})
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker():
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                r = await client.post(f"/v1/models/{model}:predict", content=body)
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "requests": total,
        "errors": errors,
        "throughput_rps": total / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * pct(latencies, 99),
    }


def start_server(base: str, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bertclf",
            "serve",
            base,
            "--port",
            str(port),
            "--max-wait-ms",
            str(max_wait_ms),
            "--max-batch",
            "32",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz").json()["models"]:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--export", default=str(OUT / "exports" / "bbc"))
    p.add_argument("--max-wait-ms", type=float, nargs="+", default=[0.0, 2.0])
    a = p.parse_args()
    text = forty_words()
    report = {
        **machine(),
        "text_words": len(text.split()),
        "in_process": in_process(a.export, text),
        "servers": {},
    }
    for wait in a.max_wait_ms:
        # Serve the model that --export names (its base folder holds one folder per model).
        proc, url = start_server(str(Path(a.export).parent), wait)
        try:
            model = Path(a.export).name  # the model the server serves from that base
            asyncio.run(load(url, text, 4, 40, model))  # warm-up
            levels = {c: asyncio.run(load(url, text, c, n, model)) for c, n in REQUESTS.items()}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        ref = report["in_process"]
        report["servers"][f"max_wait_ms={wait}"] = {
            "levels": levels,
            "p50_c1_over_bare_batch1": levels[1]["p50_ms"] / ref["batch1_p50_ms"],
            "throughput_c32_over_bare_batch32": levels[32]["throughput_rps"]
            / ref["batch32_texts_per_s"],
        }
        print(json.dumps(report["servers"][f"max_wait_ms={wait}"]), flush=True)
    (OUT / "serve_load.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
