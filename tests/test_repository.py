"""The model repository and the app in-process (Starlette's TestClient, direct calls).

The model itself still runs in its own process (bertclf.serving.worker), as in serving.
"""

import asyncio
import shutil
import time

import pytest
from starlette.testclient import TestClient

from bertclf.export.exporter import export
from bertclf.serving.app import create_app
from bertclf.serving.repository import ModelRepository, fingerprint
from test_serving import TEXTS


@pytest.fixture(scope="module")
def base(runs, tmp_path_factory):
    base = tmp_path_factory.mktemp("repo")
    export(runs[0], base, name="tickets", verify=False)
    return base


def test_poll_load_fail_retry_and_close(base):
    async def main():
        repo = ModelRepository(base)
        await repo.poll()
        assert repo.get("tickets").version == 1
        worker = repo.get("tickets").worker
        out = await asyncio.get_running_loop().run_in_executor(
            repo.executor, repo.get("tickets").run, "serving_default", [t.encode() for t in TEXTS]
        )
        assert out["scores"].shape == (3, 3)

        bad = base / "tickets" / "2"
        bad.mkdir()
        (bad / "saved_model.pb").write_bytes(b"not a model")
        await repo.poll()
        failure = repo.failed[bad]
        assert failure.attempts == 1 and failure.error
        assert [r["state"] for r in repo.status("tickets")] == ["END", "AVAILABLE"]
        assert not repo._due(bad, time.monotonic())  # unchanged, inside its back-off
        (bad / "saved_model.pb").write_bytes(b"still not a model, but changed")
        assert fingerprint(bad) != failure.fingerprint and repo._due(bad, time.monotonic())
        assert repo._due(bad, failure.retry_at + 1)  # the back-off is over
        shutil.rmtree(bad)

        await repo.close()
        assert not worker.alive and repo.models == {}

    asyncio.run(main())


def test_app_in_process(base):
    app = create_app(ModelRepository(base), poll_interval=60)
    with TestClient(app) as client:
        status = client.get("/v1/models/tickets").json()["model_version_status"]
        assert [s["state"] for s in status] == ["AVAILABLE"]
        r = client.post("/v1/models/tickets:predict", json={"instances": TEXTS})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
        r = client.post("/v1/models/tickets:classify", json={"examples": [{"text": TEXTS[0]}]})
        assert [c for c, _ in r.json()["results"][0]] == ["billing", "bug", "feature"]
        assert client.get("/v1/models/tickets/versions/7").status_code == 404


def test_a_version_without_warmup_records_still_loads(base, tmp_path):
    from bertclf import servable
    from bertclf.serving.worker import ModelWorker

    old = tmp_path / "old" / "1"  # as exported before exports carried warm-up records
    shutil.copytree(base / "tickets" / "1", old)
    (old / servable.WARMUP_REQUESTS).unlink()
    worker = ModelWorker(old)
    try:
        assert worker.run("serving_default", [b"hello"])["scores"].shape == (1, 3)
    finally:
        worker.close()
