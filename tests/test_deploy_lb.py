"""Two `bertclf serve` replicas behind HAProxy (deploy/haproxy.cfg) on loopback ports.

HAProxy comes from Debian's packages, unpacked into .tools by `make setup-tools` (which
`make test` runs). Every process is bounded by a timeout and stopped by its process group.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bertclf.export.exporter import export
from test_serving import Server, _metric, free_port

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
TEXTS = ["refund my invoice please", "the app crash error", "please add export option"]


@pytest.fixture(scope="module")
def haproxy_bin() -> Path:
    binary = TOOLS / "usr" / "sbin" / "haproxy"
    if not binary.is_file():
        pytest.fail(f"{binary} missing: run 'make setup-tools' (make test does)")
    return binary


def _start_haproxy(haproxy_bin, lb_port: int, replica_ports: list[int]) -> subprocess.Popen:
    """HAProxy with deploy/haproxy.cfg, on `lb_port`, in front of the two replicas."""
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(TOOLS / "usr" / "lib" / "x86_64-linux-gnu"),
        "BERTCLF_LB_BIND": f"127.0.0.1:{lb_port}",
        "BERTCLF_REPLICA_1": f"127.0.0.1:{replica_ports[0]}",
        "BERTCLF_REPLICA_2": f"127.0.0.1:{replica_ports[1]}",
    }
    return subprocess.Popen(
        [str(haproxy_bin), "-f", str(ROOT / "deploy" / "haproxy.cfg"), "-db"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_two_replicas_behind_haproxy_both_serve_the_same_answers(runs, tmp_path, haproxy_bin):
    export(runs[0], tmp_path, name="tickets", verify=False)
    replicas = [Server(tmp_path, "--poll", "0.5") for _ in range(2)]
    lb_port = free_port()
    lb = _start_haproxy(haproxy_bin, lb_port, [r.port for r in replicas])
    try:
        for replica in replicas:
            replica.wait_for("tickets", 1)
        client = httpx.Client(base_url=f"http://127.0.0.1:{lb_port}", timeout=30)
        deadline = time.time() + 30  # until HAProxy's health checks see both replicas up
        answers = []
        while time.time() < deadline:
            try:
                r = client.post("/v1/models/tickets:predict", json={"instances": TEXTS})
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 200:
                answers.append(r.json())
                counts = [
                    _metric(
                        rep.client.get("/metrics").text,
                        'bertclf_requests_total{code="200",route="predict"}',
                    )
                    for rep in replicas
                ]
                if len(answers) >= 20 and min(counts) > 0:
                    break
            time.sleep(0.05)
        assert lb.poll() is None, lb.stdout.read()[-2000:]
        assert len(answers) >= 20 and min(counts) > 0, (len(answers), counts)
        assert all(a == answers[0] for a in answers)  # either replica: the same answer
        direct = replicas[0].client.post("/v1/models/tickets:predict", json={"instances": TEXTS})
        assert direct.json() == answers[0]
        client.close()
    finally:
        os.killpg(lb.pid, signal.SIGTERM)
        lb.wait(timeout=30)
        for replica in replicas:
            replica.stop()
