"""`bertclf serve`: a real server on a loopback port, against real exports."""

import concurrent.futures as cf
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from bertclf.export.exporter import export
from bertclf.prediction.exported_model import ExportedModel

LABELS = ["billing", "bug", "feature"]
TEXTS = ["refund my invoice please", "the app crash error", "please add export option"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        children = [c for c, parent in parents.items() if parent == p]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for p in tree:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        rss = [ln for ln in status.splitlines() if ln.startswith("VmRSS")]
        total += int(rss[0].split()[1]) if rss else 0
    return total / 1024


class Server:
    def __init__(self, base: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bertclf", "serve", str(base), "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_for(self, name: str, version: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()[-3000:]}")
            try:
                if self.client.get("/healthz").json()["models"].get(name) == version:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"model {name} version {version} not served in {timeout}s")

    def rss_mib(self) -> float:
        """The server's resident memory with its model processes'."""
        return tree_rss_mib(self.proc.pid)

    def stop(self) -> None:
        self.client.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)  # a clean shutdown answers what is in flight
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


@pytest.fixture(scope="module")
def base(runs, tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    export(runs[0], base, name="tickets", verify=False)
    return base


@pytest.fixture(scope="module")
def server(base):
    s = Server(
        base,
        "--poll",
        "0.2",
        "--max-wait-ms",
        "30",
        "--max-instances",
        "48",
        "--max-queue",
        "64",
        "--max-body-mb",
        "1",
        "--body-timeout",  # the hot-load test holds a body open across an export
        "300",
    )
    s.wait_for("tickets", 1)
    yield s
    s.stop()


def post(server, path, body):
    return server.client.post(path, content=body if isinstance(body, bytes) else json.dumps(body))


def test_status_and_metadata(server):
    ok = {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert server.client.get("/v1/models/tickets").json() == ok
    assert server.client.get("/v1/models/tickets/versions/1").json() == ok
    r = server.client.get("/v1/models/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "Could not find any versions of model nope"}
    r = server.client.get("/v1/models/tickets/versions/7")
    assert r.status_code == 404 and r.json()["error"] == "Could not find version 7 of model tickets"
    meta = server.client.get("/v1/models/tickets/metadata").json()
    assert meta["model_spec"] == {"name": "tickets", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"]["inputs"]["text"]["dtype"] == "DT_STRING"
    assert sigs["serving_default"]["outputs"]["scores"]["tensor_shape"]["dim"][1]["size"] == "3"
    assert sigs["classify"]["method_name"] == "tensorflow/serving/classify"


def test_predict_matches_the_exported_model(server, base):
    outputs = ExportedModel(base / "tickets").outputs(TEXTS)
    expected = outputs["scores"]
    # Request shapes from TF Serving's REST API documentation.
    row = post(
        server,
        "/v1/models/tickets:predict",
        {"signature_name": "serving_default", "instances": TEXTS},
    )
    assert row.status_code == 200
    predictions = row.json()["predictions"]
    keys = ["abstain", "class_ids", "classes", "ood_score", "scores"]  # a calibrated run's
    assert [sorted(p) for p in predictions] == [keys] * 3
    np.testing.assert_allclose([p["scores"] for p in predictions], expected, atol=1e-6)
    ood = [p["ood_score"] for p in predictions]
    np.testing.assert_allclose(ood, outputs["ood_score"], rtol=1e-5)
    assert [p["abstain"] for p in predictions] == outputs["abstain"].tolist() == [False] * 3
    assert [p["classes"] for p in predictions] == [LABELS[i] for i in expected.argmax(1)]
    named = post(
        server, "/v1/models/tickets/versions/1:predict", {"instances": [{"text": t} for t in TEXTS]}
    ).json()
    assert named == row.json()
    columnar = post(server, "/v1/models/tickets:predict", {"inputs": {"text": TEXTS}}).json()
    np.testing.assert_allclose(columnar["outputs"]["scores"], expected, atol=1e-6)
    assert columnar["outputs"]["class_ids"] == expected.argmax(1).tolist()
    classify = post(
        server,
        "/v1/models/tickets:classify",
        {"signature_name": "classify", "examples": [{"text": t} for t in TEXTS]},
    )
    results = classify.json()["results"]
    assert [[label for label, _ in r] for r in results] == [LABELS] * 3
    np.testing.assert_allclose([[s for _, s in r] for r in results], expected, atol=1e-6)
    long = post(server, "/v1/models/tickets:predict", {"instances": ["refund " * 5000]})
    assert long.status_code == 200  # truncated by the model, not an error


def test_explain_matches_the_exported_model(server, base):
    expected = ExportedModel(base / "tickets").explain(TEXTS)
    r = post(server, "/v1/models/tickets:explain", {"instances": TEXTS})
    assert r.status_code == 200, r.text
    rows = r.json()["explanations"]
    assert [row["label"] for row in rows] == [row["label"] for row in expected]
    for got, want in zip(rows, expected, strict=True):
        assert [w for w, _ in got["explanation"]] == [w for w, _ in want["explanation"]]
        np.testing.assert_allclose(
            [x for _, x in got["explanation"]], [x for _, x in want["explanation"]], atol=1e-5
        )
    # Its own limit (--max-explain, default 8): an explanation costs ~34 predictions.
    r = post(server, "/v1/models/tickets:explain", {"instances": ["a"] * 9})
    assert r.status_code == 400 and "the limit is 8 (--max-explain)" in r.json()["error"]
    # TF Serving's way: the signature by name through :predict (raw arrays).
    raw = post(
        server, "/v1/models/tickets:predict", {"signature_name": "explain", "instances": TEXTS[:1]}
    )
    assert raw.status_code == 200 and "weights" in raw.json()["predictions"][0]


@pytest.mark.parametrize(
    "path,body,code,message",
    [
        ("/v1/models/tickets:predict", b"{bad", 400, "JSON Parse error: "),
        ("/v1/models/tickets:predict", {"instances": ["a"], "inputs": ["a"]}, 400, "only one of"),
        ("/v1/models/tickets:predict", {"signature": "x"}, 400, "Missing 'inputs' or 'instances'"),
        ("/v1/models/tickets:predict", {"instances": [3]}, 400, "is not of expected type: string"),
        (
            "/v1/models/tickets:predict",
            {"signature_name": "x", "instances": ["a"]},
            400,
            'Serving signature name: "x" not found',
        ),
        ("/v1/models/tickets:predict", {"instances": [{"body": "a"}]}, 400, "named input: body"),
        ("/v1/models/tickets:predict", {"instances": ["a"] * 49}, 400, "the limit is 48"),
        (
            "/v1/models/nope:predict",
            {"instances": ["a"]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "/v1/models/tickets/versions/9:predict",
            {"instances": ["a"]},
            404,
            "Servable not found for request: Specific(tickets, 9)",
        ),
        ("/v1/models/tickets:classify", {"examples": [{"body": "a"}]}, 400, "Feature: text"),
        ("/v1/models/tickets:regress", {"examples": [{"text": "a"}]}, 400, "regress"),
        ("/v1/models/tickets:predict", b"x" * (2**20 + 1), 413, "over the limit"),
        ("/v1/models/tickets:explode", {}, 404, "Malformed request"),
    ],
)
def test_errors(server, path, body, code, message):
    r = post(server, path, body)
    assert r.status_code == code, r.text
    assert message in r.json()["error"]


def test_methods_health_metrics_openapi(server):
    assert server.client.get("/v1/models/tickets:predict").status_code == 405
    assert server.client.get("/healthz").json() == {"status": "ok", "models": {"tickets": 1}}
    doc = server.client.get("/openapi.json").json()
    assert "/v1/models/{model}:predict" in doc["paths"]
    assert post(server, "/v1/models/tickets:predict", {"instances": ["hi"]}).status_code == 200
    text = server.client.get("/metrics").text  # counts this test's own requests at least
    assert 'bertclf_requests_total{code="200",route="predict"}' in text
    assert 'bertclf_requests_total{code="405",route="predict"}' in text
    assert "bertclf_request_latency_seconds_bucket" in text and "bertclf_queue_depth" in text


def _metric(text: str, name: str) -> float:
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name + " "))


def test_concurrent_requests_are_batched(server):
    before = server.client.get("/metrics").text
    with cf.ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(
                lambda t: (
                    post(server, "/v1/models/tickets:predict", {"instances": [t]}).status_code
                ),
                TEXTS * 8,
            )
        )
    after = server.client.get("/metrics").text
    assert codes == [200] * 24
    calls = _metric(after, "bertclf_batch_size_count") - _metric(before, "bertclf_batch_size_count")
    texts = _metric(after, "bertclf_batch_size_sum") - _metric(before, "bertclf_batch_size_sum")
    assert texts == 24 and calls < 24  # several requests shared a model call


def test_memory_stays_bounded_over_2000_requests(server):
    def burst(n):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            return [
                c.post("/v1/models/tickets:predict", json={"instances": [TEXTS[i % 3]]}).status_code
                for i in range(n)
            ]

    burst(100)  # warm: allocator pools, tf.function caches
    start = server.rss_mib()
    with cf.ThreadPoolExecutor(8) as pool:
        codes = [c for chunk in pool.map(burst, [250] * 8) for c in chunk]
    grown = server.rss_mib() - start
    assert codes == [200] * 2000
    # Stated bound: under 64 MiB of growth over 2,000 requests, under 1.5 GiB in all.
    assert grown < 64, f"RSS grew by {grown:.1f} MiB"
    assert server.rss_mib() < 1536


def test_hot_load_new_version_without_failures(runs, base, server):
    results, stop = [], threading.Event()

    def client_loop():
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/models/tickets:predict", json={"instances": TEXTS[:1]})
                    results.append((r.status_code, r.json()))
                except Exception as e:  # noqa: BLE001 - recorded, and fails the test below
                    results.append((type(e).__name__, None))

    thread = threading.Thread(target=client_loop)
    thread.start()
    # A request whose body is still arriving when the version changes: it must be
    # answered by the version served once its body is complete, not refused (503).
    slow = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"instances": TEXTS[:1]}).encode()
    try:
        time.sleep(1.0)
        slow.putrequest("POST", "/v1/models/tickets:predict")
        slow.putheader("Content-Length", str(len(body)))
        slow.endheaders()
        slow.send(body[:5])
        export(runs[1], base, name="tickets", verify=False)  # version 2, renamed into place
        server.wait_for("tickets", 2, timeout=60)
        slow.send(body[5:])
        answer = slow.getresponse()
        slow_result = (answer.status, json.loads(answer.read()))
        time.sleep(1.0)
    finally:
        slow.close()
        stop.set()
        thread.join()
    failed = [r for r in results if r[0] != 200]
    assert results and not failed, failed[:3]
    old = ExportedModel(base / "tickets" / "1").predict_proba(TEXTS[:1])[0]
    new = ExportedModel(base / "tickets" / "2").predict_proba(TEXTS[:1])[0]
    assert slow_result[0] == 200, slow_result
    np.testing.assert_allclose(slow_result[1]["predictions"][0]["scores"], new, atol=1e-6)
    assert not np.allclose(old, new, atol=1e-4)
    scores = [np.array(body["predictions"][0]["scores"]) for _, body in results]
    assert np.allclose(scores[0], old, atol=1e-6) and np.allclose(scores[-1], new, atol=1e-6)
    switched = [np.allclose(s, new, atol=1e-6) for s in scores]
    first_new = switched.index(True)
    assert all(switched[first_new:])  # once switched, never back
    status = server.client.get("/v1/models/tickets").json()["model_version_status"]
    assert [s["version"] for s in status] == ["2"]


def test_a_broken_version_keeps_the_current_one(base, server):
    current = server.client.get("/healthz").json()["models"]["tickets"]
    bad = base / "tickets" / str(current + 1)
    bad.mkdir()
    (bad / "saved_model.pb").write_bytes(b"not a saved model")
    time.sleep(1.5)
    assert server.client.get("/healthz").json()["models"]["tickets"] == current
    r = post(server, "/v1/models/tickets:predict", {"instances": ["still here"]})
    assert r.status_code == 200


def test_fuzz_openapi_no_server_errors(server):
    import hypothesis
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    current = server.client.get("/healthz").json()["models"]["tickets"]
    failures, calls = [], []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def check(case):
            # Aim at the served model, so bodies reach the parser and the model.
            if "model" in (case.path_parameters or {}):
                case.path_parameters["model"] = "tickets"
            if "version" in (case.path_parameters or {}):
                case.path_parameters["version"] = current
            response = case.call(base_url=server.url)
            calls.append(response.status_code)
            try:  # no 5xx, a documented status, a body that matches the documented schema
                case.validate_response(response, checks=checks)
            except Exception as e:  # noqa: BLE001 - schemathesis raises a group of failures
                failures.append((case.method, case.formatted_path, str(e)[:300]))

        check()
    assert len(calls) >= 300  # a few hundred generated requests, bounded
    assert failures == []
    assert calls.count(200) >= 50  # many reached the model, not just the parser


def test_serve_bad_arguments(tmp_path):
    from conftest import run_cli

    proc = run_cli("serve", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "no such directory" in proc.stderr.splitlines()[-1]
    proc = run_cli("serve", str(tmp_path), "--max-batch", "0")
    assert proc.returncode == 2 and "--max-batch 0" in proc.stderr.splitlines()[-1]
