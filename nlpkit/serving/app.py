"""The HTTP service around an exported model: FastAPI app with micro-batching, limits and clean shutdown.

``create_app(config)`` loads the ONNX file (torch is never imported) and returns the ASGI app;
``python -m nlpkit.serve`` runs it under uvicorn. Endpoints: ``POST /predict``, ``GET /health``,
``GET /metadata``, and the OpenAPI document at ``/openapi.json`` (browsable at ``/docs`` and ``/redoc``,
both working offline: their assets are served from ``/docs-assets``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

import nlpkit
from nlpkit.data.inputs import TextRefusedError
from nlpkit.serving.batcher import MicroBatcher, QueueFull, ShuttingDown
from nlpkit.serving.config import ServeConfig
from nlpkit.serving.schemas import (
    ErrorResponse,
    HealthResponse,
    Limits,
    MetadataResponse,
    prediction_name,
    request_model,
    response_model,
)
from nlpkit.utils.io import sha256_file

log = logging.getLogger("nlpkit.serve")

DOCS_ASSETS = "/docs-assets"  # Swagger UI / ReDoc scripts, styles and icon, served from fastapi-offline

ERRORS = {
    413: {"model": ErrorResponse, "description": "request body larger than max_body_bytes"},
    415: {"model": ErrorResponse, "description": "no Content-Type, or not application/json"},
    422: {
        "model": ErrorResponse,
        "description": "malformed JSON, wrong types, no texts or too many, a text empty or only whitespace, "
        "a pair that is not two texts, texts sent to a pair model or pairs to a single-text one, a text the "
        "model cannot take (more word pieces than its max_length)",
    },
    503: {"model": ErrorResponse, "description": "queue full (see Retry-After) or shutting down"},
}


def load_predictor(config: ServeConfig):
    """The torch-free ``OnnxPredictor`` for ``config.model``: a missing, foreign or tampered file is an
    ArtifactError naming the file and what is wrong with it. A ``task=semantic_parse`` export (its
    ``native/`` folder, or the run or export folder holding it, and no ONNX file) is served by the C++
    parser behind a pipe (``NativeParserPredictor``: ``ort_threads`` is its thread count)."""
    from nlpkit.serving.native_parser import NativeParserPredictor, find_native_dir
    from nlpkit.serving.onnx_predictor import OnnxPredictor

    native = find_native_dir(Path(config.model))
    if native is not None:
        return NativeParserPredictor(native, threads=config.ort_threads or 1)
    return OnnxPredictor(config.model, threads=config.ort_threads)


def model_metadata(predictor, config: ServeConfig) -> MetadataResponse:
    meta = predictor.metadata
    return MetadataResponse(
        task=predictor.task,
        labels=list(predictor.labels),
        intents=list(predictor.intents) or None,
        multilabel=predictor.multilabel,
        inputs=list(getattr(predictor, "inputs", ["text"])),
        nlpkit_version=meta.get("nlpkit_version"),
        server_version=nlpkit.__version__,
        model_file=Path(predictor.path).name,  # not the server's directory layout
        model_sha256=sha256_file(Path(predictor.path)),
        tokenizer_sha256=meta.get("tokenizer_sha256"),
        weights_sha256=meta.get("weights_sha256"),
        verified_sha256=sorted(predictor.verified_files),
        limits=Limits(**{name: getattr(config, name) for name in Limits.model_fields}),
    )


def clean_text(text: str, config: ServeConfig) -> str:
    """Apply the long-text policy (lone surrogates never get here: the request model rejects them)."""
    if len(text) > config.max_chars_per_text:  # only reachable with on_long_text=truncate
        return text[: config.max_chars_per_text]
    return text


Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers


def _reply(status: int, detail: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> Reply:
    return status, orjson.dumps({"detail": detail}), list(headers)


class PredictService:
    """What ``POST /predict`` does with a body: validate, apply the text policy, batch, encode the answer."""

    def __init__(self, config: ServeConfig, batcher: MicroBatcher, inputs: Sequence[str] = ("text",)):
        self.config = config
        self.batcher = batcher
        self.request_model = request_model(config, inputs)
        self.pairs = len(inputs) == 2  # the body's field is "pairs": [[a, b], ...]

    async def answer(self, body: bytes) -> Reply:
        # pydantic's Rust JSON parser validates while parsing: one pass, errors name the place.
        try:
            request = self.request_model.model_validate_json(body)
        except ValidationError as err:
            return _reply(422, _problems(err.errors(include_url=False), prefix="body"))
        if self.pairs:
            texts: list = [tuple(clean_text(t, self.config) for t in pair) for pair in request.pairs]
        else:
            texts = [clean_text(text, self.config) for text in request.texts]
        try:
            predictions = await self.batcher.submit(texts)
        except QueueFull as err:
            return _reply(503, str(err), [(b"retry-after", b"1")])
        except ShuttingDown as err:
            return _reply(503, str(err), [(b"connection", b"close")])
        except TextRefusedError as err:  # this request's text, not the model: its place, as for a blank one
            field = "pairs" if self.pairs else "texts"
            return _reply(
                422, [{"loc": f"body.{field}.{err.index}", "msg": err.reason, "type": "text_refused"}]
            )
        except Exception as err:  # noqa: BLE001 - a model failure on this request alone
            log.exception("prediction failed")
            return _reply(500, f"prediction failed: {type(err).__name__}: {err}")
        return 200, orjson.dumps({"predictions": predictions}), []

    def check_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> Reply | None:
        """415 for a body not declared JSON (no Content-Type included), 413 for a declared length over
        ``max_body_bytes``."""
        content_type = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return _reply(400, "invalid Content-Length header")
                if declared > self.config.max_body_bytes:
                    return _reply(413, self.too_large(declared))
        if content_type is None:
            return _reply(415, "no Content-Type header: send JSON (Content-Type: application/json)")
        if not _is_json(content_type):
            shown = content_type.decode("latin-1")
            return _reply(415, f"Content-Type {shown!r}: send JSON (Content-Type: application/json)")
        return None

    def too_large(self, size: int, at_least: bool = False) -> str:
        prefix = "at least " if at_least else ""
        return f"request body is {prefix}{size} bytes; the limit is {self.config.max_body_bytes} (max_body_bytes)"


class ServingApp:
    """The ASGI app uvicorn runs: ``POST /predict`` is answered right here, the rest by FastAPI.

    The hot path skips the framework's routing, dependency and middleware layers, which cost more
    event-loop time than everything else a prediction needs (measured with py-spy: about 3/4 of the
    loop's Python time). FastAPI still owns the documented route (same ``PredictService.answer``),
    ``/health``, ``/metadata``, ``/openapi.json``, ``/docs``, 404/405 and the lifespan.
    """

    def __init__(self, api: FastAPI, service: PredictService):
        self.api = api
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.api(scope, receive, send)
            return
        reply = self.service.check_headers(scope["headers"])
        if reply is None:
            body = await self._read_body(receive)
            if body is None:  # the client went away
                return
            reply = body if isinstance(body, tuple) else await self.service.answer(body)
        status, content, headers = reply
        start_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": start_headers + headers})
        await send({"type": "http.response.body", "body": content})

    async def _read_body(self, receive: Receive) -> bytes | Reply | None:
        """The whole body, or a 413 reply as soon as it passes ``max_body_bytes`` (chunked uploads too)."""
        chunks: list[bytes] = []
        size = 0
        limit = self.service.config.max_body_bytes
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _reply(413, self.service.too_large(size, at_least=True))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


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


def create_app(config: ServeConfig, predictor=None) -> ServingApp:
    """The ASGI app serving ``config.model`` (or an already loaded ``predictor``); FastAPI app at ``.api``."""
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
            "serving %s model %s (%d labels), max_batch_size=%d, max_wait_ms=%g",
            metadata.task, predictor.path, len(metadata.labels), config.max_batch_size, config.max_wait_ms,
        )  # fmt: skip
        yield
        await batcher.close()  # uvicorn has already finished the in-flight requests
        log.info("stopped after %s", batcher.stats)

    inputs = list(getattr(predictor, "inputs", ["text"]))
    service = PredictService(config, batcher, inputs)
    # the response schema is the file's heads' keys, named after its task (doc_cls: DocClsPrediction)
    # (an embedding file of a pair run: PairEmbeddingPrediction)
    kind = getattr(predictor, "metadata", {}).get("file_kind")
    named = f"{metadata.task}_{kind}" if kind and metadata.task else metadata.task
    PredictResponse = response_model(predictor.heads, prediction_name(named))
    # FastAPIOffline: FastAPI whose /docs and /redoc load Swagger UI / ReDoc from files the package
    # ships (served under DOCS_ASSETS), not from a CDN, so the pages work without internet access.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
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

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return _error(422, _problems(err.errors()))

    request_schema = service.request_model.model_json_schema()
    body_doc = {"required": True, "content": {"application/json": {"schema": request_schema}}}

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        summary="Predict for a list of " + ("pairs of texts" if service.pairs else "texts"),
        openapi_extra={"requestBody": body_doc},
    )
    async def predict(request: Request) -> Response:
        """Documents the endpoint; ``ServingApp`` answers it with the same ``service.answer``."""
        reply = service.check_headers(request.headers.raw)
        if reply is None:
            body = await request.body()
            too_big = len(body) > config.max_body_bytes
            reply = _reply(413, service.too_large(len(body))) if too_big else await service.answer(body)
        status, content, headers = reply
        extra = {name.decode(): value.decode() for name, value in headers}
        return Response(content, status_code=status, media_type="application/json", headers=extra)

    @app.get("/health", response_model=HealthResponse, summary="Liveness and queue depth")
    async def health() -> HealthResponse:
        status = "draining" if batcher.closing else "ok"
        return HealthResponse(status=status, queued_texts=batcher.queued_texts, **batcher.stats)

    @app.get("/metadata", response_model=MetadataResponse, summary="What model is served, and the limits")
    async def get_metadata() -> MetadataResponse:
        return metadata

    return ServingApp(app, service)


def _no_telemetry() -> dict:
    """FastAPI >= 0.16x checks for OpenTelemetry providers on every request; nothing here uses them."""
    import inspect

    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}
