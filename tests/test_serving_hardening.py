"""`bertclf serve` under hostile and careless clients, and careless deploy scripts.

Each test is a defect found by fuzzing and loading the server, against a real server
on a loopback port serving real exports (issue: serving hardening).
"""

import concurrent.futures as cf
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bertclf import servable
from bertclf.export.exporter import export
from test_serving import TEXTS, Server, post

from conftest import one_error_line, run_script


@pytest.fixture(scope="module")
def base(runs, tmp_path_factory):
    base = tmp_path_factory.mktemp("hard")
    export(runs[0], base, name="tickets", verify=False)
    (base / "tickets" / "\u00b2").mkdir()  # a non-ASCII "digit": TF Serving ignores it
    return base


@pytest.fixture(scope="module")
def server(base):
    s = Server(
        base, "--poll", "0.2", "--max-batch", "4", "--header-timeout", "1", "--body-timeout", "2"
    )
    s.wait_for("tickets", 1)
    yield s
    s.stop()


def test_a_bad_client_never_fails_or_reads_good_clients(server):
    secret = "garbage-from-client-B"
    good = {"examples": [{"text": t} for t in TEXTS]}
    bad = {"signature_name": "classify", "instances": [secret]}

    def call(i):
        if i % 2:
            return "bad", post(server, "/v1/models/tickets:predict", bad)
        return "good", post(server, "/v1/models/tickets:classify", good)

    for _ in range(3):
        with cf.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(16)))
        for kind, r in results:
            if kind == "good":
                assert r.status_code == 200, r.text
                assert secret not in r.text
            else:
                assert r.status_code == 400, r.text
                assert "not a serialized tf.Example" in r.json()["error"]
    # The classify signature through :predict with real tf.Examples still works.
    import base64

    b64 = base64.b64encode(servable.text_example(TEXTS[0].encode())).decode()
    r = post(
        server,
        "/v1/models/tickets:predict",
        {"signature_name": "classify", "instances": [{"b64": b64}]},
    )
    assert r.status_code == 200 and len(r.json()["predictions"][0]["scores"]) == 3


@pytest.mark.parametrize(
    "path,body,code",
    [
        ("/v1/models/tickets/versions/%C2%B3", None, 404),
        ("/v1/models/tickets/versions/%D9%A1", None, 404),  # Arabic-Indic one: not version 1
        ("/v1/models/tickets/versions/%D9%A1:predict", {"instances": ["a"]}, 404),
        ("/v1/models/tickets/versions/" + "9" * 40, None, 404),
        ("/v1/models/tickets:predict", b"[" * 100_000 + b"]" * 100_000, 400),
        ("/v1/models/tickets:predict", b'{"instances": [' + b"1" * 5000 + b"]}", 400),
        ("/v1/models/tickets:predict", b'{"instances": ["\\ud800"]}', 400),
        ("/v1/models/tickets:predict", b'{"signature_name": "\\ud800", "instances": ["a"]}', 400),
        ("/v1/models/tickets:classify", b'{"examples": [{"text": "\\udfff"}]}', 400),
    ],
)
def test_malformed_requests_get_a_4xx(server, path, body, code):
    r = server.client.get(path) if body is None else post(server, path, body)
    assert r.status_code == code, r.text
    assert "error" in r.json()  # and the error body renders


def test_405_names_the_allowed_method_and_header_limits(server):
    r = server.client.get("/v1/models/tickets:predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = server.client.post("/v1/models/tickets", content=b"{}")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    for method in ("OPTIONS", "PUT", "DELETE"):  # each route names its own method
        r = server.client.request(method, "/v1/models/0")
        assert r.status_code == 405 and r.headers["allow"] == "GET", method
        r = server.client.request(method, "/v1/models/tickets:classify")
        assert r.status_code == 405 and r.headers["allow"] == "POST", method
    many = {f"x-h{i}": "1" for i in range(101)}
    assert server.client.get("/healthz", headers=many).status_code == 431
    r = server.client.get("/healthz", headers={"x-big": "a" * 20_000})
    assert r.status_code == 431
    assert server.client.get("/v1/models/tickets?" + "q" * 20_000).status_code == 431


def test_half_open_connections_are_closed(server):
    sockets = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        sockets.append(s)
    time.sleep(2.5)  # --header-timeout 1
    for s in sockets:
        s.settimeout(2)
        assert s.recv(1024) == b""  # closed by the server
        s.close()
    assert server.client.get("/healthz").status_code == 200


def test_a_trickled_body_is_timed_out(server):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"POST /v1/models/tickets:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        s.settimeout(0.3)
        reply = b""
        while time.monotonic() - start < 15 and not reply.endswith(b"}"):
            try:
                s.sendall(b" ")  # a byte at a time, never the whole body
                reply += s.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    took = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert b"--body-timeout" in reply and 1.5 < took < 6, (reply, took)
    assert server.client.get("/healthz").status_code == 200


def test_large_requests_do_not_starve_small_ones(server):
    big = {"instances": [f"{TEXTS[i % 3]} " * 8 + str(i) for i in range(512)]}  # 128 calls of 4
    finished = []

    def run_big():
        r = post(server, "/v1/models/tickets:predict", big)
        finished.append(("big", time.perf_counter()))
        return r

    with cf.ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_big)
        while not future.done():
            r = post(server, "/v1/models/tickets:predict", {"instances": [TEXTS[0]]})
            assert r.status_code == 200
            finished.append(("small", time.perf_counter()))
        assert future.result().status_code == 200
    assert len(future.result().json()["predictions"]) == 512
    big_done = dict(finished)["big"]
    served_meanwhile = [t for kind, t in finished if kind == "small" and t < big_done]
    assert len(served_meanwhile) >= 3  # between the big request's chunks, not after them


def test_no_429_on_an_idle_server_for_an_allowed_request(server):
    r = post(server, "/v1/models/tickets:predict", {"instances": ["a"] * 512})
    assert r.status_code == 200
    r = post(server, "/v1/models/tickets:predict", {"instances": ["a"] * 513})
    assert r.status_code == 400 and "--max-instances" in r.json()["error"]


def _status(server) -> dict[str, dict]:
    body = server.client.get("/v1/models/tickets").json()
    return {row["version"]: row for row in body["model_version_status"]}


def _wait(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_failed_version_shows_its_error_and_loads_once_fixed(server, base):
    current = server.client.get("/healthz").json()["models"]["tickets"]
    good = base / "tickets" / str(current)
    bad = base / "tickets" / str(current + 1)
    bad.mkdir()
    shutil.copy(good / "saved_model.pb", bad / "saved_model.pb")  # a copy caught half-done
    assert _wait(lambda: _status(server).get(str(current + 1), {}).get("state") == "END")
    row = _status(server)[str(current + 1)]
    assert row["status"]["error_code"] != "OK" and row["status"]["error_message"]
    assert server.client.get("/healthz").json()["models"]["tickets"] == current
    for part in ("variables", "assets", "assets.extra"):  # the copy completes
        shutil.copytree(good / part, bad / part)
    assert _wait(lambda: server.client.get("/healthz").json()["models"]["tickets"] == current + 1)
    assert _status(server)[str(current + 1)]["state"] == "AVAILABLE"
    broken = base / "tickets" / str(current + 2)  # failed, then removed: no longer listed
    broken.mkdir()
    shutil.copy(good / "saved_model.pb", broken / "saved_model.pb")
    assert _wait(lambda: _status(server).get(str(current + 2), {}).get("state") == "END")
    shutil.rmtree(broken)
    assert _wait(lambda: str(current + 2) not in _status(server), timeout=5)


def test_old_versions_processes_exit_after_a_swap(server, base):
    def model_processes():
        out = subprocess.run(
            ["pgrep", "-f", "bertclf.serving.worker"], capture_output=True, text=True
        ).stdout.split()
        return {int(p) for p in out if _is_child_of(int(p), server.proc.pid)}

    assert _wait(lambda: len(model_processes()) == 1, timeout=30)
    before = model_processes()
    model_dir = base / "tickets"
    current = max(servable.versions(model_dir))
    tmp = model_dir / ".copy.tmp"
    shutil.copytree(model_dir / str(current), tmp)
    tmp.rename(model_dir / str(current + 1))  # published atomically, as export does
    assert _wait(lambda: server.client.get("/healthz").json()["models"]["tickets"] == current + 1)
    assert _wait(lambda: len(model_processes()) == 1, timeout=30)
    assert not (model_processes() & before)  # the old version's process is gone


def _healthy(s: Server) -> bool:
    try:
        return s.client.get("/healthz").status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def _is_child_of(pid: int, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent


def test_base_that_disappears_and_returns_is_logged_once_each(base, tmp_path):
    moved = tmp_path / "moved"
    s = Server(base, "--poll", "0.2")
    try:
        s.wait_for("tickets", max(servable.versions(base / "tickets")))
        base.rename(moved)
        time.sleep(1.5)
        assert s.client.get("/healthz").status_code == 200
        moved.rename(base)
        time.sleep(1.0)
    finally:
        if moved.exists():
            moved.rename(base)
        s.stop()
    log = s.proc.stdout.read()
    assert log.count("is not readable") == 1 and log.count("is readable again") == 1, log
    assert "Traceback" not in log


def test_serve_checks_port_and_warns_on_an_empty_base(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        line = one_error_line(run_script("serve", str(tmp_path), "--port", str(port)))
        assert f"--port {port}: cannot listen" in line
    finally:
        taken.close()
    s = Server(tmp_path, "--poll", "0.2")
    try:
        assert _wait(lambda: _healthy(s), timeout=60)
    finally:
        s.stop()
    assert "holds no model yet" in s.proc.stdout.read()


def test_export_and_serve_ignore_odd_version_names(server, base, runs):
    # The server fixture started with BASE/tickets/² present, and serves.
    assert server.client.get("/v1/models/tickets").status_code == 200
    before = servable.versions(base / "tickets")
    result = export(runs[0], base, name="tickets", verify=False)
    assert result.version == before[-1] + 1
    assert "\u00b2" in {p.name for p in (base / "tickets").iterdir()}


def test_a_client_that_leaves_mid_body_is_its_own_event_not_a_server_error(base):
    s = Server(base, "--poll", "0.2")
    try:
        s.wait_for("tickets", max(servable.versions(base / "tickets")))  # others added some
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", s.port)) as sock:
                sock.sendall(
                    b"POST /v1/models/tickets:predict HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                    b'{"instances": ["half'
                )
                time.sleep(0.2)  # the server is reading the body when the client leaves
        labels = r'(code="499",route="predict"|route="predict",code="499")'
        pattern = r"bertclf_requests_total\{" + labels + r"\} 5"
        deadline = time.monotonic() + 20  # the server notices each departure on its own time
        while not re.search(pattern, metrics := s.client.get("/metrics").text):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.2)
        assert 'code="500"' not in metrics
    finally:
        s.stop()
    log = s.proc.stdout.read()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[-3000:]
