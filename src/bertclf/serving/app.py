"""The HTTP layer: Starlette routes over protocol.py and the model repository.

Handlers only read the request, call the pure protocol functions and the
repository, and turn `ServingError`s into {"error": ...} with the status from
errors.STATUS. Paths follow TF Serving: /v1/models/NAME[/versions/N][/metadata],
/v1/models/NAME[/versions/N]:predict and :classify.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bertclf import servable
from bertclf.serving import protocol
from bertclf.serving.config import ServeConfig
from bertclf.serving.errors import (
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServingError,
    status_of,
)
from bertclf.serving.openapi import openapi_document
from bertclf.serving.repository import ModelRepository

logger = logging.getLogger(__name__)

# A request whose client went away mid-body, in the metrics (nginx's 499, "client closed
# request"; TF Serving and uvicorn log it as a disconnect, not as a server error).
CLIENT_CLOSED = 499
MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:/labels/(?P<label>[^/:]+))?(?P<suffix>/metadata|:predict|:classify|:regress|:explain)?$"
)


@dataclass
class Limits:
    max_body: int = int(ServeConfig.max_body_mb * 2**20)
    max_instances: int = ServeConfig.max_instances
    body_timeout: float = ServeConfig.body_timeout
    max_explain: int = ServeConfig.max_explain


class Metrics:
    """Prometheus series: requests by route and code, latency, batch sizes, queue depth."""

    def __init__(self, repo: ModelRepository):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bertclf_requests", "HTTP requests", ["route", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "bertclf_request_latency_seconds",
            "request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
        )
        self.batch = Histogram(
            "bertclf_batch_size",
            "inputs per model call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        queue = Gauge(
            "bertclf_queue_depth", "inputs waiting for a model call", registry=self.registry
        )
        queue.set_function(
            lambda: sum(
                m.batcher.queued_inputs for m in repo.models.values() if m.batcher is not None
            )
        )


class SafeJSONResponse(JSONResponse):
    """JSON that always renders: a lone surrogate (which a client may send, and an error
    message may quote) is written as its JSON escape instead of failing the response."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


def error_response(e: ServingError) -> JSONResponse:
    headers = {"Allow": e.allow} if isinstance(e, MethodNotAllowed) and e.allow else None
    if isinstance(e, RequestTimeout):  # the rest of the body may still come: do not read it
        headers = {"Connection": "close"}
    return SafeJSONResponse({"error": str(e)}, status_code=status_of(e), headers=headers)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, at most `limit` bytes, all of it within `timeout` seconds (a client that
    trickles it a byte at a time would otherwise hold its connection for ever)."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"request body not complete within {timeout:g} s ({size} bytes came); "
            "send it faster or raise the server's --body-timeout"
        ) from None
    return b"".join(chunks)


class Handlers:
    def __init__(self, repo: ModelRepository, limits: Limits, metrics: Metrics):
        self.repo, self.limits, self.metrics = repo, limits, metrics

    async def models(self, request: Request) -> Response:
        match = MODEL_PATH.match(request.url.path)
        route = "other"
        if match:
            route = {None: "status", "/metadata": "metadata"}.get(
                match["suffix"], (match["suffix"] or ":other")[1:]
            )
        start = time.perf_counter()
        try:
            response = await self._dispatch(request, match)
        except ServingError as e:
            response = error_response(e)
        except ClientDisconnect:  # the client's doing, not the server's: no 5xx, no traceback
            logger.info("%s: the client disconnected before its request ended", request.url.path)
            response = Response(status_code=CLIENT_CLOSED)  # never sent: counted as the client's
        except Exception as e:  # noqa: BLE001 - a real fault: 500, logged
            logger.exception("error serving %s", request.url.path)
            response = SafeJSONResponse({"error": f"Internal: {type(e).__name__}"}, 500)
        self.metrics.requests.labels(route, str(response.status_code)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    async def _dispatch(self, request: Request, match) -> Response:
        if match is None:
            raise NotFound(f"Malformed request: {request.method} {request.url.path}")
        name, suffix = match["name"], match["suffix"]
        if match["label"] is not None:
            raise NotFound(f"Unrecognized servable version label: {match['label']}")
        version = None
        if match["version"] is not None:
            version = servable.parse_version(match["version"])
            if version is None:
                raise NotFound(f"Malformed request: {request.method} {request.url.path}")
        want = "POST" if suffix in (":predict", ":classify", ":regress", ":explain") else "GET"
        if request.method != want:
            raise MethodNotAllowed(f"{request.method} is not supported here; use {want}", want)
        if suffix is None:
            return SafeJSONResponse(protocol.model_status(self.repo.status(name, version)))
        loaded = self.repo.get(name, version)  # an unknown model is a 404 before any body
        if suffix == "/metadata":
            return SafeJSONResponse(
                protocol.model_metadata(name, loaded.version, loaded.signatures)
            )
        body = await read_body(request, self.limits.max_body, self.limits.body_timeout)
        doc = protocol.parse_json(body)
        # Resolved again after the await: a new version may have been swapped in while the
        # body arrived, and the old one's batcher now refuses work. From here to submit()
        # nothing awaits, so the version used is the one being served.
        loaded = self.repo.get(name, version)
        if suffix == ":predict":
            req = protocol.parse_predict(doc, loaded.signatures, self.limits.max_instances)
            out = await loaded.batcher.submit(req.signature_name, req.inputs)
            return SafeJSONResponse(
                protocol.format_predict({k: v.tolist() for k, v in out.items()}, req.columnar)
            )
        if suffix == ":explain":
            texts = protocol.parse_explain(doc, loaded.signatures, self.limits.max_explain)
            out = await loaded.batcher.submit(servable.EXPLAIN_SIGNATURE, texts)
            labels, multilabel = loaded.labels
            return SafeJSONResponse(protocol.format_explain(out, labels, multilabel))
        if suffix == ":classify":
            signature, texts = protocol.parse_classify(
                doc, loaded.signatures, self.limits.max_instances
            )
            out = await loaded.batcher.submit(signature, texts)  # the model process makes Examples
            return SafeJSONResponse(
                protocol.format_classify(out["classes"].tolist(), out["scores"].tolist())
            )
        raise InvalidArgument(
            "Expected regression signature method_name to be "
            "tensorflow/serving/regress; this model has no regress signature"
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "models": {n: m.version for n, m in self.repo.models.items()}}
        )

    async def metrics_text(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(self.limits.max_instances, self.limits.max_explain))


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _not_found(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return error_response(NotFound(f"Malformed request: {request.method} {request.url.path}"))
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return error_response(MethodNotAllowed(f"{request.method} is not supported here", allow))
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


def create_app(
    repo: ModelRepository, poll_interval: float = 1.0, limits: Limits | None = None
) -> Starlette:
    """The ASGI app: loads the models at start-up, then polls BASE every `poll_interval` s."""
    metrics = Metrics(repo)
    repo.on_batch = metrics.batch.observe
    h = Handlers(repo, limits or Limits(), metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await repo.poll()
        task = asyncio.create_task(repo.poll_forever(poll_interval))
        yield
        task.cancel()
        await repo.close()  # answer what is queued, then end the model processes

    routes = [
        # Every method reaches the handler, which answers a 405 naming the one method its
        # route takes (Starlette's own 405 would list the union of every route's). Listed:
        # Starlette reads methods=None on a function endpoint as GET only.
        Route("/v1/models/{rest:path}", h.models, methods=HTTP_METHODS),
        Route("/healthz", h.healthz, methods=["GET"]),
        Route("/metrics", h.metrics_text, methods=["GET"]),
        Route("/openapi.json", h.openapi, methods=["GET"]),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _not_found}
    )
