"""Benchmark: `bertclf serve` under a bounded load on loopback vs. the bare model.

    .venv/bin/python bench/serve_load.py [--export bench/out/exports/bbc] [--max-wait-ms 0 2]

--export may hold a SavedModel or an ONNX model (`bertclf export --format onnx`).
In one run: the exported model called in-process (batch 1, median of 60 calls;
batch 32, median of 10 calls) and through a model process's pipe as the server calls
it (`ModelWorker`, batch 1), then for each --max-wait-ms a server on a free loopback
port, loaded by an asyncio client at concurrency 1, 8 and 32 with a fixed number of
single-text requests (a 40-word BBC excerpt). The client (--clients, the first named) is
raw keep-alive sockets by default: httpx's AsyncClient spends about 2 ms of CPU a request
on the same 2 cores as the server, which is the client's cost, not the server's; --paired
measures with both. Reports p50/p99 latency, throughput and
errors, and the two target ratios; and, to see where the time goes, the p50 of a
request that reaches no model (GET the model's status), the mean model batch at each
level (the server's /metrics), and the CPU seconds per request that the load client,
the server process and its model process spent (/proc, Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, bbc_texts, forty_words, free_port, machine, pct, timed  # noqa: E402

REQUESTS = {1: 100, 8: 240, 32: 640}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (/proc/PID/stat fields 14-15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Child processes of `pid`, whichever of its threads started them."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(c) for t in tasks for c in (t / "children").read_text().split()]


def batch_totals(url: str) -> tuple[float, float]:
    """(inputs, model calls) so far, from the server's batch-size histogram."""
    values = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("bertclf_batch_size_sum", "bertclf_batch_size_count"):
            values[name] = float(value)
    return values["bertclf_batch_size_sum"], values["bertclf_batch_size_count"]


def in_process(export_dir: str, text: str) -> dict[str, float]:
    from bertclf import servable
    from bertclf.prediction.predict import load_predictor
    from bertclf.serving.worker import ModelWorker

    model = load_predictor(export_dir)  # a SavedModel or an ONNX export
    b1 = timed(lambda: model.predict_proba([text]), repeats=60, warmup=5)
    # The same call through a model process, as the server makes it: pickles over pipes.
    worker = ModelWorker(servable.find_version_dir(Path(export_dir)))
    try:
        piped = timed(lambda: worker.run("serving_default", [text.encode()]), 60, warmup=5)
    finally:
        worker.close()
    same32 = timed(lambda: model.predict_proba([text] * 32, batch_size=32), repeats=10)
    bbc32 = bbc_texts(32)
    bbc = timed(lambda: model.predict_proba(bbc32, batch_size=32), repeats=10)
    return {
        "batch1_p50_ms": 1000 * statistics.median(b1),
        "worker_pipe_batch1_p50_ms": 1000 * statistics.median(piped),
        "batch32_texts_per_s": 32 / statistics.median(same32),
        "batch32_bbc_texts_per_s": 32 / statistics.median(bbc),
    }


class RawClient:
    """One keep-alive HTTP/1.1 connection that sends a pre-encoded request and reads the
    reply by its Content-Length: a load client that costs the shared 2 cores about a
    tenth of httpx's CPU per request, so that less of what is measured is the client."""

    def __init__(self, url: str):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
        if length is None:  # not a reply this client can frame: count it as an error
            raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        await self.reader.readexactly(int(length[1]))
        return int(head[9:12])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def raw_request(url: str, model: str, body: str, status: bool) -> bytes:
    host = url.removeprefix("http://")
    if status:
        return f"GET /v1/models/{model} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    data = body.encode()
    head = (
        f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def senders(url: str, model: str, body: str, status: bool, client: str, concurrency: int):
    """One request function per connection, and the coroutine function that closes them.

    client: "httpx" (httpx's AsyncClient) or "raw" (RawClient: the same requests, bytes
    prepared once)."""
    if client == "raw":
        raw = raw_request(url, model, body, status)
        conns = [RawClient(url) for _ in range(concurrency)]

        async def close_raw() -> None:
            await asyncio.gather(*(c.close() for c in conns))

        return [lambda c=c: c.request(raw) for c in conns], close_raw
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    http = httpx.AsyncClient(base_url=url, limits=limits, timeout=60)

    async def one() -> int:
        if status:
            return (await http.get(f"/v1/models/{model}")).status_code
        return (await http.post(f"/v1/models/{model}:predict", content=body)).status_code

    return [one] * concurrency, http.aclose


async def load(
    url: str,
    text: str,
    concurrency: int,
    total: int,
    model: str = "bbc",
    status: bool = False,
    client: str = "httpx",
) -> dict[str, float]:
    """`total` requests from `concurrency` connections: predict, or (status) GET the model.

    client: "httpx" or "raw" (see `senders`)."""
    latencies, errors = [], 0
    body = json.dumps({"instances": [text]})
    remaining = total
    send, close = senders(url, model, body, status, client, concurrency)

    async def worker(call):
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            code = await call()
            latencies.append(time.perf_counter() - start)
            errors += code != 200

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(call) for call in send))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await close()
    return {
        "client": client,
        "requests": total,
        "errors": errors,
        "throughput_rps": total / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * pct(latencies, 99),
        "client_cpu_ms_per_request": 1000 * cpu / total,
        "seconds": elapsed,
    }


def level(
    url: str, pid: int, text: str, concurrency: int, total: int, model: str, client: str
) -> dict:
    """One load level, with the CPU the server and its model process spent on it."""
    server, workers = cpu_seconds(pid), sum(cpu_seconds(c) for c in children(pid))
    inputs, calls = batch_totals(url)
    result = asyncio.run(load(url, text, concurrency, total, model, client=client))
    server = cpu_seconds(pid) - server
    workers = sum(cpu_seconds(c) for c in children(pid)) - workers
    inputs, calls = (a - b for a, b in zip(batch_totals(url), (inputs, calls), strict=True))
    result["server_cpu_ms_per_request"] = 1000 * server / total
    result["model_cpu_ms_per_request"] = 1000 * workers / total
    result["cores_busy"] = (
        server + workers + result["client_cpu_ms_per_request"] * total / 1000
    ) / result["seconds"]
    result["mean_batch"] = inputs / max(calls, 1)
    return result


def start_server(base: str, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
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


def paired(export: str, wait: float, text: str, rounds: int, clients: list[str]) -> dict:
    """The two target ratios, each from a bare and a server measurement taken back to
    back, `rounds` times: this machine's speed drifts by tens of percent within minutes,
    so a reference measured once, minutes before the server, moves the ratio with it.
    With several load clients, each round measures the server with each of them, their
    order reversed every other round."""
    from bertclf.prediction.predict import load_predictor

    bare = load_predictor(export)  # a SavedModel or an ONNX export
    proc, url = start_server(str(Path(export).parent), wait)
    model, rows, same32 = Path(export).name, [], [text] * 32
    try:
        for client in clients:  # warm-up
            asyncio.run(load(url, text, 4, 40, model, client=client))
        for r in range(rounds):
            order = clients if r % 2 == 0 else clients[::-1]
            b1 = statistics.median(timed(lambda: bare.predict_proba([text]), 30, warmup=3))
            c1 = {c: asyncio.run(load(url, text, 1, 30, model, client=c)) for c in order}
            b32 = statistics.median(
                timed(lambda: bare.predict_proba(same32, batch_size=32), 3, warmup=1)
            )
            c32 = {c: level(url, proc.pid, text, 32, 320, model, c) for c in order}
            row = {"bare_batch1_p50_ms": 1000 * b1, "bare_batch32_texts_per_s": 32 / b32}
            for c in clients:
                row[c] = {
                    "c1_p50_ms": c1[c]["p50_ms"],
                    "c1_client_cpu_ms_per_request": c1[c]["client_cpu_ms_per_request"],
                    "p50_c1_over_bare_batch1": c1[c]["p50_ms"] / 1000 / b1,
                    "c32": c32[c],
                    "throughput_c32_over_bare_batch32": c32[c]["throughput_rps"] * b32 / 32,
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    return {"max_wait_ms": wait, "clients": clients, "rounds": rows}


def unpaired(export: str, wait: float, text: str, client: str, renice: int | None) -> dict:
    """One server at `--max-wait-ms` wait: every load level, and its status-call floor."""
    # Serve the model that --export names (its base folder holds one folder per model).
    proc, url = start_server(str(Path(export).parent), wait)
    if renice is not None:
        for pid in children(proc.pid):
            os.setpriority(os.PRIO_PROCESS, pid, renice)
    try:
        model = Path(export).name  # the model the server serves from that base
        asyncio.run(load(url, text, 4, 40, model, client=client))  # warm-up
        floor = asyncio.run(load(url, text, 1, 200, model, status=True, client=client))
        levels = {c: level(url, proc.pid, text, c, n, model, client) for c, n in REQUESTS.items()}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    return {"levels": levels, "status_c1_p50_ms": floor["p50_ms"]}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--export", default=str(OUT / "exports" / "bbc"))
    p.add_argument("--max-wait-ms", type=float, nargs="+", default=[0.0, 2.0])
    p.add_argument(
        "--renice-model",
        type=int,
        default=None,
        help="an experiment: give the server's model processes this nice value",
    )
    p.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="R",
        help="instead: R rounds of bare and server measurements back to back (c=1, c=32)",
    )
    p.add_argument(
        "--clients",
        nargs="+",
        choices=["httpx", "raw"],
        default=["raw", "httpx"],
        help="load clients: httpx's AsyncClient, or raw keep-alive sockets (RawClient)",
    )
    return p.parse_args()


def main() -> None:
    a = parse_args()
    text = forty_words()
    if a.paired:
        report = {**machine(), **paired(a.export, a.max_wait_ms[0], text, a.paired, a.clients)}
        (OUT / "serve_load_paired.json").write_text(json.dumps(report, indent=2))
        return
    client = a.clients[0]  # unpaired runs use the first client named
    ref = in_process(a.export, text)
    report = {**machine(), "text_words": len(text.split()), "renice_model": a.renice_model}
    report |= {"client": client, "in_process": ref, "servers": {}}
    for wait in a.max_wait_ms:
        server = unpaired(a.export, wait, text, client, a.renice_model)
        levels = server["levels"]
        server["p50_c1_over_bare_batch1"] = levels[1]["p50_ms"] / ref["batch1_p50_ms"]
        server["throughput_c32_over_bare_batch32"] = (
            levels[32]["throughput_rps"] / ref["batch32_texts_per_s"]
        )
        report["servers"][f"max_wait_ms={wait}"] = server
        print(json.dumps(server), flush=True)
    (OUT / "serve_load.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
