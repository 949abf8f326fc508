"""The HTTP service around an exported model: FastAPI app with micro-batching, limits and clean shutdown.

``create_app(config)`` loads the ONNX file (torch is never imported) and returns the ASGI app;
``python -m nlpkit.serve`` runs it under uvicorn. Endpoints: ``POST /predict``, ``GET /health``,
``GET /metadata``, and the OpenAPI document at ``/openapi.json`` (browsable at ``/docs``).

No ``from __future__ import annotations`` here: FastAPI must see the request model built in ``create_app``.
"""

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import nlpkit
from nlpkit.errors import ArtifactError
from nlpkit.serving.batcher import MicroBatcher, QueueFull, ShuttingDown
from nlpkit.serving.config import ServeConfig
from nlpkit.serving.schemas import (
    ErrorResponse,
    HealthResponse,
    Limits,
    MetadataResponse,
    request_model,
    response_model,
)

log = logging.getLogger("nlpkit.serve")

ERRORS = {
    413: {"model": ErrorResponse, "description": "request body larger than max_body_bytes"},
    415: {"model": ErrorResponse, "description": "body not sent as application/json"},
    422: {"model": ErrorResponse, "description": "malformed JSON, wrong types, empty or too many texts"},
    503: {"model": ErrorResponse, "description": "queue full (see Retry-After) or shutting down"},
}


def load_predictor(config: ServeConfig):
    """The torch-free ``OnnxPredictor`` for ``config.model``; a missing or foreign file is an ArtifactError."""
    from nlpkit.serving.onnx_predictor import OnnxPredictor

    try:
        return OnnxPredictor(config.model, threads=config.ort_threads)
    except (FileNotFoundError, ValueError) as err:
        raise ArtifactError(str(err)) from err
    except Exception as err:  # onnxruntime's own load errors (not a model, corrupt file)
        raise ArtifactError(f"{config.model}: onnxruntime cannot load it: {err}") from err


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_list(value: str | None) -> list[str] | None:
    return None if value is None else list(json.loads(value))


def model_metadata(predictor, config: ServeConfig) -> MetadataResponse:
    meta = predictor.metadata
    return MetadataResponse(
        task=predictor.task,
        labels=list(predictor.labels),
        intents=_json_list(meta.get("intents")),
        multilabel=bool(getattr(predictor, "multilabel", False)),
        nlpkit_version=meta.get("nlpkit_version"),
        server_version=nlpkit.__version__,
        model_file=str(Path(predictor.path).resolve()),
        model_sha256=sha256_file(Path(predictor.path)),
        tokenizer_sha256=meta.get("tokenizer_sha256"),
        weights_sha256=meta.get("weights_sha256"),
        limits=Limits(**{name: getattr(config, name) for name in Limits.model_fields}),
    )


def clean_text(text: str, config: ServeConfig) -> str:
    """Apply the long-text policy (lone surrogates never get here: the request model rejects them)."""
    if len(text) > config.max_chars_per_text:  # only reachable with on_long_text=truncate
        return text[: config.max_chars_per_text]
    return text


class RequestGuard:
    """ASGI middleware, before any body is read: 415 for a POST body that is not declared JSON, 413 for
    one over ``max_bytes`` (declared length checked up front, chunked bodies counted as they arrive)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-type" and scope["method"] == "POST" and not _is_json(value):
                detail = f"Content-Type {value.decode('latin-1')!r}: send JSON (application/json)"
                await _error(415, detail)(scope, receive, send)
                return
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _error(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await _error(413, self._message(declared))(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # chunked body without a declared length
                    raise HTTPException(413, self._message(received, at_least=True))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, size: int, at_least: bool = False) -> str:
        prefix = "at least " if at_least else ""
        return f"request body is {prefix}{size} bytes; the limit is {self.max_bytes} (max_body_bytes)"


def _problems(errors: Sequence[dict], prefix: str | None = None) -> list[dict[str, str]]:
    """pydantic errors as ``{"loc": "body.texts.3", "msg": ..., "type": ...}`` (JSON-safe, no input echo)."""
    problems = []
    for problem in errors:
        parts = [prefix] if prefix else []
        parts += [str(part) for part in problem.get("loc", ())]
        problems.append(
            {"loc": ".".join(parts), "msg": str(problem.get("msg", "")), "type": problem.get("type", "")}
        )
    return problems


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def create_app(config: ServeConfig, predictor=None) -> FastAPI:
    """The ASGI app serving ``config.model`` (or an already loaded ``predictor``)."""
    predictor = predictor if predictor is not None else load_predictor(config)
    metadata = model_metadata(predictor, config)
    batch_size = config.max_batch_size
    batcher = MicroBatcher(
        lambda texts: predictor.predict(texts, batch_size=batch_size),
        max_batch_size=config.max_batch_size,
        max_wait_ms=config.max_wait_ms,
        max_queue=config.max_queue,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        log.info(
            "serving %s model %s (%d labels), batches of up to %d texts within %.1f ms",
            metadata.task, metadata.model_file, len(metadata.labels), config.max_batch_size, config.max_wait_ms,
        )  # fmt: skip
        yield
        await batcher.close()  # uvicorn has already finished the in-flight requests
        log.info("stopped after %s", batcher.stats)

    PredictRequest = request_model(config)
    PredictResponse = response_model(metadata.task, metadata.multilabel)
    app = FastAPI(
        title="nlpkit serve",
        version=nlpkit.__version__,
        summary=f"Predictions of an exported nlpkit {metadata.task} model (ONNX Runtime, micro-batched).",
        description=(
            f"Limits: at most {config.max_texts_per_request} texts per request, "
            f"{config.max_chars_per_text} characters per text ({config.on_long_text} longer ones), "
            f"{config.max_body_bytes} bytes per body (413). Errors are 4xx with a `detail` message; "
            f"503 with Retry-After when {config.max_queue} texts are already waiting."
        ),
        lifespan=lifespan,
        **_no_telemetry(),
    )
    app.state.batcher = batcher
    app.state.predictor = predictor
    app.add_middleware(RequestGuard, max_bytes=config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return _error(422, _problems(err.errors()))

    # The body is parsed and validated in one step by pydantic's Rust JSON parser (about half the
    # event-loop time of FastAPI's json.loads + validation path); the schema is documented as usual.
    request_schema = PredictRequest.model_json_schema()
    body_doc = {"required": True, "content": {"application/json": {"schema": request_schema}}}

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        summary="Predict for a list of texts",
        openapi_extra={"requestBody": body_doc},
    )
    async def predict(request: Request) -> Response:
        try:
            body = PredictRequest.model_validate_json(await request.body())
        except ValidationError as err:
            return _error(422, _problems(err.errors(include_url=False), prefix="body"))
        texts = [clean_text(text, config) for text in body.texts]
        try:
            predictions = await batcher.submit(texts)
        except QueueFull as err:
            return _error(503, str(err), headers={"Retry-After": "1"})
        except ShuttingDown as err:
            return _error(503, str(err), headers={"Connection": "close"})
        except Exception as err:  # noqa: BLE001 - a model failure on this request alone
            log.exception("prediction failed")
            return _error(500, f"prediction failed: {type(err).__name__}: {err}")
        return Response(orjson.dumps({"predictions": predictions}), media_type="application/json")

    @app.get("/health", response_model=HealthResponse, summary="Liveness and queue depth")
    async def health() -> HealthResponse:
        status = "draining" if batcher.closing else "ok"
        return HealthResponse(status=status, queued_texts=batcher.queued_texts, **batcher.stats)

    @app.get("/metadata", response_model=MetadataResponse, summary="What model is served, and the limits")
    async def get_metadata() -> MetadataResponse:
        return metadata

    return app


def _no_telemetry() -> dict:
    """FastAPI >= 0.16x checks for OpenTelemetry providers on every request; nothing here uses them."""
    import inspect

    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def app_from_env() -> FastAPI:
    """Factory for worker processes (``workers > 1``): the config travels as JSON in the environment."""
    import os

    return create_app(ServeConfig(**json.loads(os.environ["NLPKIT_SERVE_CONFIG"])))
