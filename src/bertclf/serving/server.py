"""`bertclf serve`: check BASE, build the app, run it under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from bertclf import servable
from bertclf.errors import BertclfError
from bertclf.serving.config import ServeConfig
from bertclf.serving.repository import BatchSettings, ModelRepository

logger = logging.getLogger(__name__)


def make_repository(config: ServeConfig) -> ModelRepository:
    """BASE of models, or one model's directory (its versions, or a version itself)."""
    base, name = Path(config.base), config.name
    if not base.is_dir():
        raise BertclfError(f"{base}: no such directory; pass the --to folder of 'bertclf export'")
    single = servable.find_version_dir(base) is not None
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
    batching = BatchSettings(config.max_batch, config.max_wait_ms / 1000, config.max_queue)
    return ModelRepository(base, single_name=name if single else None, batching=batching)


def serve(config: ServeConfig) -> int:
    """Serve every model under `config.base` until interrupted (TF Serving's REST API)."""
    import uvicorn

    from bertclf.serving.app import Limits, create_app
    from bertclf.serving.http import MAX_HEADER_BYTES, GuardedH11Protocol, limit_headers

    repo = make_repository(config)
    limits = Limits(
        int(config.max_body_mb * 2**20),
        config.max_instances,
        config.body_timeout,
        config.max_explain,
    )
    app = create_app(repo, poll_interval=config.poll, limits=limits)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding to %s: the server is reachable from other hosts", config.host)
    logger.info("serving %s on http://%s:%d", config.base, config.host, config.port)
    uvicorn.run(
        limit_headers(app),
        host=config.host,
        port=config.port,
        http=GuardedH11Protocol.with_timeout(config.header_timeout),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_level="warning",
        access_log=config.access_log,
    )
    return 0
