"""`bertclf serve`: check the arguments, build the app, run it under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from bertclf import servable
from bertclf.errors import BertclfError
from bertclf.serving.repository import BatchSettings, ModelRepository

logger = logging.getLogger(__name__)


def make_repository(base: str | Path, name: str | None, batching: BatchSettings) -> ModelRepository:
    """BASE of models, or one model's directory (its versions, or a version itself)."""
    base = Path(base)
    if not base.is_dir():
        raise BertclfError(f"{base}: no such directory; pass the --to folder of 'bertclf export'")
    single = servable.find_version_dir(base) is not None
    if name is not None and not servable.valid_name(name):
        raise BertclfError(f"--name {name!r} has characters outside [A-Za-z0-9_.-]")
    if single:
        is_version = servable.parse_version(base.name) is not None
        name = name or (base.parent.name if is_version else base.name)
        if not servable.valid_name(name):
            raise BertclfError(
                f"{base}: model name {name!r} has characters outside [A-Za-z0-9_.-]; pass --name"
            )
    elif name is not None:
        raise BertclfError(
            f"--name is only for a single model's directory; {base} holds "
            "model folders, each served under its own name"
        )
    return ModelRepository(base, single_name=name if single else None, batching=batching)


def serve(
    base,
    name=None,
    host="127.0.0.1",
    port=8501,
    poll=1.0,
    max_batch=32,
    max_wait_ms=2.0,
    max_queue=512,
    max_body_mb=10.0,
    max_instances=1024,
    access_log=False,
) -> int:
    import uvicorn

    from bertclf.serving.app import Limits, create_app

    for option, value in (
        ("--max-batch", max_batch),
        ("--max-queue", max_queue),
        ("--max-instances", max_instances),
    ):
        if value < 1:
            raise BertclfError(f"{option} {value} is invalid: use 1 or more")
    if max_wait_ms < 0 or poll <= 0 or max_body_mb <= 0:
        raise BertclfError("--max-wait-ms must be >= 0, --poll and --max-body-mb > 0")
    repo = make_repository(base, name, BatchSettings(max_batch, max_wait_ms / 1000, max_queue))
    app = create_app(
        repo, poll_interval=poll, limits=Limits(int(max_body_mb * 2**20), max_instances)
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding to %s: the server is reachable from other hosts", host)
    logger.info("serving %s on http://%s:%d", base, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=access_log)
    return 0
