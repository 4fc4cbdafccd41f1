"""`ServeConfig`: the settings of `bertclf serve`, the only place their defaults live."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertclf import servable
from bertclf.config.fields import check, option


@dataclass(frozen=True)
class ServeConfig:
    """`bertclf serve`: TF Serving's REST API over the exports under a base path.

    Args:
        base: model base path (BASE/NAME/VERSION), or one model's directory.
        name: model name when `base` is a single model's directory.
        host: address to bind.
        port: TCP port.
        poll: seconds between scans of `base` for new versions.
        max_batch: most texts in one model call (larger requests are split).
        max_wait_ms: under concurrent load, how long a batch waits to fill up.
        max_queue: texts waiting for the model before new requests get 429.
        max_body_mb: request body limit (413 above it).
        max_instances: texts in one request (400 above it); at most `max_queue`.
        max_explain: texts in one :explain request (400 above it): an explanation
            costs about 34 predictions (`bertclf.model.attribution.STEPS` + 2).
        header_timeout: seconds a client has to send a request's headers.
        body_timeout: seconds a client has to send a request's body once its headers are in.
        access_log: log every request.
    """

    base: str = option(dataclasses.MISSING, "model base path (BASE), or one model's directory")
    name: str | None = option(None, "model name when BASE is one model's directory", type=str)
    host: str = option("127.0.0.1", "address to bind (any other than loopback is warned about)")
    port: int = option(8501, "TCP port (the default is TF Serving's REST port)")
    poll: float = option(1.0, "seconds between scans of BASE for new versions")
    max_batch: int = option(32, "most texts in one model call; larger requests are split")
    max_wait_ms: float = option(
        2.0, "under concurrent load, how long a batch waits to fill up (a lone request never)"
    )
    max_queue: int = option(1024, "texts waiting for the model before requests get 429")
    max_body_mb: float = option(10.0, "request body limit in MiB (413 above it)")
    max_instances: int = option(512, "texts in one request (400 above it); at most --max-queue")
    max_explain: int = option(
        8, "texts in one :explain request (400 above it): each costs about 34 predictions"
    )
    header_timeout: float = option(10.0, "seconds a client has to send a request's headers")
    # 30 s carries the default 10 MiB body at about 3 Mbit/s; a client slower than that
    # (or one trickling a byte at a time) gets 408 and its connection closed.
    body_timeout: float = option(
        30.0, "seconds a client has to send a request's body once its headers are in (408 after)"
    )
    access_log: bool = option(False, "log every request")

    def __post_init__(self) -> None:
        if self.name is not None:
            check(servable.valid_name(self.name), "--name", self.name, "use only [A-Za-z0-9_.-]")
        check(0 < self.port < 65536, "--port", self.port, "use a port in 1..65535")
        check(self.poll > 0, "--poll", self.poll, "use a positive number of seconds")
        for flag, value in (
            ("--max-batch", self.max_batch),
            ("--max-queue", self.max_queue),
            ("--max-instances", self.max_instances),
            ("--max-explain", self.max_explain),
        ):
            check(value >= 1, flag, value, "use 1 or more")
        check(self.max_wait_ms >= 0, "--max-wait-ms", self.max_wait_ms, "use 0 or more")
        check(self.max_body_mb > 0, "--max-body-mb", self.max_body_mb, "use a positive size")
        check(self.header_timeout > 0, "--header-timeout", self.header_timeout, "use seconds > 0")
        check(self.body_timeout > 0, "--body-timeout", self.body_timeout, "use seconds > 0")
        check(
            self.max_instances <= self.max_queue,
            "--max-instances",
            self.max_instances,
            f"a request must fit the queue: use at most --max-queue ({self.max_queue})",
        )
