"""The HTTP API's JSON shapes (pydantic), so the OpenAPI document says exactly what a client sends and gets.

The request model is built per server because its limits are settings; the prediction model is built
from the exported file's heads (:mod:`nlpkit.serving.heads`): each head's response keys, in order, with
their types and descriptions, named after the file's task (``doc_cls`` -> ``DocClsPrediction``). No
task is listed here: the heads of any export document themselves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nlpkit.errors import ArtifactError
from nlpkit.serving.config import ServeConfig
from nlpkit.serving.heads import ServedHead, legacy_heads, parse_heads
from nlpkit.serving.onnx_predictor import EMPTY_TEXT_MESSAGE


class Span(BaseModel):
    type: str = Field(description="entity / slot type, e.g. 'fromloc.city_name'")
    start: int = Field(description="first token of the span")
    end: int = Field(description="last token of the span (inclusive)")
    text: str = Field(description="the span's tokens joined by spaces")


#: a response field's JSON type (``heads.ResponseField.type``) -> its Python annotation
FIELD_TYPES: dict[str, Any] = {
    "str": str,
    "str_list": list[str],
    "float": float,
    "float_list": list[float],
    "float_map": dict[str, float],
    "spans": list[Span],
}


def prediction_name(task: str | None) -> str:
    """The prediction model's name for ``task``: ``doc_cls`` -> ``DocClsPrediction`` (the OpenAPI
    component's name; only letters and digits survive from an untrusted file's task)."""
    parts = re.split(r"[^0-9A-Za-z]+", task or "")
    return "".join(part[:1].upper() + part[1:] for part in parts) + "Prediction"


def prediction_model(
    heads: Sequence[ServedHead] | str | None, multilabel: bool = False, name: str | None = None
) -> Any:
    """The pydantic type of one prediction: every key of ``heads``, in order (an open object without
    heads). ``heads`` may also be a task name, for a file exported before ``heads`` metadata existed
    (``multilabel``: its ``multilabel`` field); the model is then named after it."""
    if isinstance(heads, str) or heads is None:
        task = heads
        described = legacy_heads(task, multilabel, ",") if task is not None else None
        if described is None:
            return dict[str, Any]
        heads = parse_heads(described, _no_problem)
        name = name or prediction_name(task)
    fields = {
        field.key: (FIELD_TYPES[field.type], Field(description=field.description))
        for head in heads
        for field in head.fields()
    }
    return create_model(name or "Prediction", **fields)


def _no_problem(field: str, what: str) -> ArtifactError:
    return ArtifactError(f"nlpkit.serving.heads.legacy_heads gives an invalid head: {field} {what}")


#: a character that is not whitespace for ``str.strip``/``str.split`` (the code points of ``str.isspace``),
#: spelled so that JSON Schema (ECMA-262) and Python regex engines read it alike (their ``\\S`` differ)
NOT_WHITESPACE = r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("empty_text", "text is " + EMPTY_TEXT_MESSAGE)
    return text


class _Request(BaseModel):
    """A request body: exactly its one field (``texts`` or ``pairs``); the other one is named in the
    error, since it is the mistake of a client that mixed up the served files."""

    model_config = ConfigDict(extra="forbid")
    field: ClassVar[str] = "texts"
    hint: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _the_right_field(cls, data: Any) -> Any:
        other = "texts" if cls.field == "pairs" else "pairs"
        if isinstance(data, dict) and other in data and cls.field not in data:
            raise PydanticCustomError("wrong_request_field", cls.hint)
        return data


def request_model(config: ServeConfig, inputs: Sequence[str] = ("text",)) -> type[BaseModel]:
    """``{"texts": [...]}`` with this server's limits in the schema (so clients and fuzzers see them);
    for a two-input file (a pair or ranking model, ``inputs``: its string inputs' names),
    ``{"pairs": [[a, b], ...]}``."""
    max_length = config.max_chars_per_text if config.on_long_text == "reject" else None
    text_doc = (
        "raw text, not empty or only whitespace (422); a lone UTF-16 surrogate escape is not text (422)"
    )
    if config.on_long_text == "reject":
        text_doc += f"; at most {config.max_chars_per_text} characters (longer: 422)"
    else:
        text_doc += f"; characters past {config.max_chars_per_text} are dropped"
    # The pattern documents the rule for clients and fuzzers; _not_blank enforces it with a clear message.
    text_type = Annotated[
        str,
        StringConstraints(strict=True, max_length=max_length),
        AfterValidator(_not_blank),
        WithJsonSchema(
            {"type": "string", "pattern": NOT_WHITESPACE} | ({"maxLength": max_length} if max_length else {})
        ),
    ]
    most = config.max_texts_per_request
    if len(inputs) == 2:
        first, second = inputs
        pairs = Annotated[
            list[tuple[text_type, text_type]],
            Field(
                min_length=1,
                max_length=most,
                description=f"1 to {most} pairs [{first}, {second}] of two texts each; predictions come "
                "back in this order. Each text: " + text_doc,
                examples=[[["wake me up at seven", "set an alarm for 7 am"]]],
            ),
        ]
        hint = (
            f"this model scores pairs of texts ({first}, {second}): send "
            '{"pairs": [[a, b], ...]}, not "texts"'
        )
        base = type("PairsRequestBase", (_Request,), {"field": "pairs", "hint": hint})
        return create_model("PredictRequest", __base__=base, pairs=(pairs, ...))
    texts = Annotated[
        list[text_type],
        Field(
            min_length=1,
            max_length=most,
            description=f"1 to {most} texts; predictions come back in this order. " + text_doc,
            examples=[["show me flights from boston to denver"]],
        ),
    ]
    hint = 'this model takes single texts: send {"texts": [...]}, not "pairs"'
    base = type("TextsRequestBase", (_Request,), {"field": "texts", "hint": hint})
    return create_model("PredictRequest", __base__=base, texts=(texts, ...))


def response_model(heads: Sequence[ServedHead] | str | None, name: str | None = None) -> type[BaseModel]:
    """``{"predictions": [...]}`` with the prediction model of ``heads`` (see ``prediction_model``)."""
    return create_model(
        "PredictResponse",
        predictions=(
            list[prediction_model(heads, name=name)],
            Field(description="one per input text, in order"),
        ),
    )


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="what was wrong with the request, or why it failed"
    )


class HealthResponse(BaseModel):
    status: Literal["ok", "draining"]
    queued_texts: int = Field(description="texts waiting for a batch")
    batches: int = Field(description="onnxruntime calls made so far")
    requests: int = Field(description="requests answered so far")
    texts: int = Field(description="texts predicted so far")
    rejected_queue_full: int = Field(description="requests answered 503 because the queue was full")


class Limits(BaseModel):
    max_texts_per_request: int
    max_chars_per_text: int
    on_long_text: Literal["reject", "truncate"]
    max_body_bytes: int
    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    header_timeout_s: float
    body_timeout_s: float
    keep_alive_timeout_s: float
    max_connections: int


class MetadataResponse(BaseModel):
    task: str | None = Field(description="doc_cls, tagging, intent_slot, intent, ...")
    labels: list[str] = Field(
        description="document labels (doc_cls), tags (tagging, intent_slot slots) or intents (intent)"
    )
    intents: list[str] | None = Field(default=None, description="intent labels (intent_slot, intent)")
    multilabel: bool
    inputs: list[str] = Field(
        default_factory=lambda: ["text"],
        description="the model's string inputs: ['text'], or a pair model's two (request body 'pairs')",
    )
    nlpkit_version: str | None = Field(description="nlpkit version that exported the model")
    server_version: str = Field(description="nlpkit version serving it")
    model_file: str = Field(description="file name of the served model")
    model_sha256: str = Field(description="SHA-256 of the served .onnx file")
    tokenizer_sha256: str | None = None
    weights_sha256: str | None = None
    verified_sha256: list[str] = Field(
        default_factory=list,
        description="the *_sha256 fields checked at start-up against the run directory's files "
        "(only when the model is served from RUN/export/ and those files are there)",
    )
    limits: Limits
