"""Benchmark: `bertclf serve` across hot swaps, beside a large request, and under fuzzing.

    python bench/serve_hardening.py --export DIR --src SRC [--src OTHER] swaps|starve|fuzz

DIR is one exported version (BASE/NAME/VERSION). Each SRC is a bertclf `src` folder
(e.g. an older commit's, from `git archive`); each measurement starts `python -m bertclf
serve` from it on a free loopback port, the SRCs one after another in one sitting.

- swaps: publishes DIR as versions 2..N+1 one after another (copied beside BASE/NAME,
  then renamed in: atomic), waits for each to be served and sends 20 requests; reports
  the resident memory of the server and its model processes after each swap, and the
  growth per swap after the first.
- starve: 5 rounds of one 512-text request with single-text requests sent back to back
  beside it; reports the single-text requests' p50/p99 latency, how many were refused
  (429), and the big one's time.
- fuzz: schemathesis over /openapi.json (--cases per operation) plus structure-aware
  bodies (valid and broken requests, random Unicode, random signature names, deep
  nesting, huge numbers); reports how many requests got a 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine, pct  # noqa: E402

TEXT = "The app crashes with an error whenever I upload a photo from my phone."


def tree_rss_mib(pid: int) -> float:
    """Resident memory of `pid` and all its descendants."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [c for c, p in parents.items() if p == parent]
        tree.update(children)
        frontier += children
    total = 0
    for p in tree:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Server:
    def __init__(self, src: str, base: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": src}
        cmd = [sys.executable, "-m", "bertclf", "serve", str(base), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def served(self, name: str) -> int | None:
        try:
            return self.client.get("/healthz").json()["models"].get(name)
        except (httpx.TransportError, ValueError):
            return None

    def wait_for(self, name: str, version: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.served(name) != version:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"version {version} of {name} not served")
            time.sleep(0.2)

    def stop(self) -> None:
        self.client.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)


def fresh_base(export: Path) -> Path:
    base = Path(tempfile.mkdtemp(prefix="bertclf-serve-bench-"))
    shutil.copytree(export, base / "m" / "1")
    return base


def predict(server: Server, texts: list[str]) -> float:
    start = time.perf_counter()
    r = server.client.post("/v1/models/m:predict", json={"instances": texts})
    r.raise_for_status()
    return time.perf_counter() - start


def swaps(src: str, export: Path, count: int) -> dict:
    base = fresh_base(export)
    server = Server(src, base, "--poll", "0.5")
    try:
        server.wait_for("m", 1)
        for _ in range(20):
            predict(server, [TEXT])
        rss = [tree_rss_mib(server.proc.pid)]
        for version in range(2, count + 2):
            tmp = base / "m" / f".{version}.copy"
            shutil.copytree(export, tmp)
            os.rename(tmp, base / "m" / str(version))
            server.wait_for("m", version)
            for _ in range(20):
                predict(server, [TEXT])
            time.sleep(3)  # the old version's requests finish, its process (if any) exits
            rss.append(tree_rss_mib(server.proc.pid))
        growth = [b - a for a, b in zip(rss[1:], rss[2:], strict=False)]
        return {
            "rss_mib": [round(r, 1) for r in rss],
            "growth_per_swap_after_first_mib": [round(g, 1) for g in growth],
            "max_growth_per_swap_after_first_mib": round(max(growth), 1),
        }
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def starve(src: str, export: Path, rounds: int) -> dict:
    base = fresh_base(export)
    server = Server(src, base, "--poll", "1")
    try:
        server.wait_for("m", 1)
        for _ in range(20):
            predict(server, [TEXT])
        small, big, refused = [], [], 0
        for _ in range(rounds):
            done = threading.Event()

            def run_big(done=done):
                big.append(predict(server, [f"{TEXT} {i}" for i in range(512)]))
                done.set()

            thread = threading.Thread(target=run_big)
            thread.start()
            time.sleep(0.05)  # the big request is in
            while not done.is_set():
                start = time.perf_counter()
                r = server.client.post("/v1/models/m:predict", json={"instances": [TEXT]})
                if r.status_code == 429:  # refused while the big request fills the queue
                    refused += 1
                    time.sleep(0.05)
                    continue
                r.raise_for_status()
                small.append(time.perf_counter() - start)
            thread.join()
        return {
            "small_answered": len(small),
            "small_refused_429": refused,
            "small_p50_ms": round(1000 * statistics.median(small), 1) if small else None,
            "small_p99_ms": round(1000 * pct(small, 99), 1) if small else None,
            "big_median_s": round(statistics.median(big), 2),
        }
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def hostile_bodies(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    """Structure-aware cases: valid requests, broken ones, odd Unicode and sizes."""
    alphabet = [chr(c) for c in (0x41, 0xE9, 0x4E2D, 0x1F600, 0x0, 0x7F, 0xFFFD, 0x200B)]

    def text():
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))

    makers = [
        lambda: ("predict", json.dumps({"instances": [text() for _ in range(rng.randint(1, 8))]})),
        lambda: ("predict", json.dumps({"inputs": {"text": [text()]}})),
        lambda: ("predict", json.dumps({"signature_name": text(), "instances": [text()]})),
        lambda: ("predict", json.dumps({"signature_name": "classify", "instances": [text()]})),
        lambda: ("classify", json.dumps({"examples": [{"text": text()}], "context": {}})),
        lambda: ("classify", json.dumps({"examples": [{"text": [text(), text()]}]})),
        lambda: ("predict", '{"instances": ["\\ud800' + text() + '"]}'),
        lambda: ("predict", "[" * rng.randint(1, 50_000) + "]"),
        lambda: ("predict", '{"instances": [' + "9" * rng.randint(10, 9000) + "]}"),
        lambda: ("predict", json.dumps({"instances": [{"b64": text()}]})),
        lambda: ("predict", text()),
    ]
    return [rng.choice(makers)() for _ in range(n)]


def fuzz(src: str, export: Path, cases: int, hostile: int) -> dict:
    import hypothesis
    import schemathesis

    base = fresh_base(export)
    server = Server(src, base, "--poll", "1")
    codes: list[int] = []
    try:
        server.wait_for("m", 1)
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()

            @hypothesis.settings(
                max_examples=cases,
                deadline=None,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy())
            def check(case):
                if "model" in (case.path_parameters or {}):
                    case.path_parameters["model"] = "m"
                if "version" in (case.path_parameters or {}):
                    case.path_parameters["version"] = 1
                codes.append(case.call(base_url=server.url).status_code)

            check()
        schema_cases = len(codes)
        rng = random.Random(0)
        for verb, body in hostile_bodies(rng, hostile):
            r = server.client.post(f"/v1/models/m:{verb}", content=body.encode("utf-8", "replace"))
            codes.append(r.status_code)
        return {
            "schemathesis_cases": schema_cases,
            "structure_aware_cases": hostile,
            "5xx": sum(c >= 500 for c in codes),
            "2xx": sum(200 <= c < 300 for c in codes),
            "4xx": sum(400 <= c < 500 for c in codes),
        }
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("swaps", "starve", "fuzz"))
    ap.add_argument("--export", required=True, help="one exported version directory")
    ap.add_argument("--src", action="append", required=True, help="a bertclf src folder")
    ap.add_argument("--swaps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", type=int, default=300, help="schemathesis cases per operation")
    ap.add_argument("--hostile", type=int, default=2000)
    args = ap.parse_args()
    export = Path(args.export).resolve()
    for src in args.src:
        if args.what == "swaps":
            result = swaps(src, export, args.swaps)
        elif args.what == "starve":
            result = starve(src, export, args.rounds)
        else:
            result = fuzz(src, export, args.cases, args.hostile)
        print(json.dumps({"what": args.what, "src": src, **result, **machine()}), flush=True)


if __name__ == "__main__":
    main()
