"""``ServeConfig``: every knob of ``python -m nlpkit.serve``, with defaults for a 2-core machine."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nlpkit.errors import ConfigError

LONG_TEXT_POLICIES = ("reject", "truncate")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass
class ServeConfig:
    """Server settings; ``python -m nlpkit.serve key=value ...`` sets any of them."""

    model: str = "???"
    """The exported ``model.onnx`` (or a run / export directory holding one). Required."""
    host: str = "127.0.0.1"
    """Interface to bind. Loopback by default: exposing the service is an explicit choice (``0.0.0.0``)."""
    port: int = 8000
    """TCP port; 0 picks a free one (the chosen port is printed)."""
    workers: int = 1
    """Server processes sharing the socket, each with its own model and batcher."""
    ort_threads: int = 1
    """onnxruntime intra-op threads per worker. One thread + the event loop fill 2 cores."""
    max_batch_size: int = 32
    """Most texts merged into one onnxruntime call."""
    max_wait_ms: float = 0.0
    """Longest a request waits (from its arrival) for others to join its batch. 0: no added wait; the
    requests that arrive while a batch runs form the next one (measured: same throughput at
    concurrency 16 as 2 ms, a third of the latency at concurrency 1)."""
    max_queue: int = 512
    """Most texts waiting for a batch; a request that would exceed it gets 503 + Retry-After."""
    max_texts_per_request: int = 64
    """More texts in one request: 422."""
    max_chars_per_text: int = 2000
    """Longer texts are rejected (422) or cut to this length, as ``on_long_text`` says."""
    on_long_text: str = "reject"
    """``reject`` (422 naming the text) or ``truncate`` (keep the first ``max_chars_per_text`` characters)."""
    max_body_bytes: int = 1_048_576
    """Larger request bodies: 413, before they are read into memory."""
    header_timeout_s: float = 10.0
    """The request line and headers must arrive within this many seconds of the connection opening (or of
    the request's first byte on a kept-alive connection): else 408 and close. Stops silent and
    byte-at-a-time (slowloris) clients from holding connections."""
    body_timeout_s: float = 30.0
    """The whole body must arrive within this many seconds of the headers: else 408 and close
    (at the default ``max_body_bytes``, a client slower than ~35 KB/s)."""
    keep_alive_timeout_s: float = 5.0
    """An idle kept-alive connection is closed after this many seconds without a new request."""
    max_connections: int = 512
    """Most connections open at once; one more is answered 503 and closed (file descriptors stay bounded)."""
    drain_timeout_s: float = 30.0
    """On SIGTERM/SIGINT: stop accepting, finish in-flight requests for at most this long, then exit."""
    access_log: bool = False
    """One log line per request (costs throughput)."""
    log_level: str = "info"

    def __post_init__(self) -> None:
        positive = ["workers", "ort_threads", "max_batch_size", "max_queue", "max_texts_per_request"]
        positive += ["max_chars_per_text", "max_body_bytes", "max_connections"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be a positive integer")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port={self.port}: must be 0..65535")
        if self.max_wait_ms < 0 or self.drain_timeout_s < 0:
            raise ConfigError("max_wait_ms and drain_timeout_s must be >= 0")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be a positive number of seconds")
        if self.on_long_text not in LONG_TEXT_POLICIES:
            raise ConfigError(
                f"on_long_text={self.on_long_text!r}: choose one of {', '.join(LONG_TEXT_POLICIES)}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level={self.log_level!r}: choose one of {', '.join(LOG_LEVELS)}")
        if self.max_queue < self.max_texts_per_request:
            raise ConfigError(
                f"max_queue={self.max_queue} < max_texts_per_request={self.max_texts_per_request}: "
                "a maximal request could never be queued"
            )

    @classmethod
    def from_args(cls, argv: Sequence[str]) -> ServeConfig:
        """Parse ``key=value`` arguments (unknown keys fail naming the valid ones)."""
        from omegaconf import OmegaConf

        from nlpkit.cli import parse_args

        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        args = OmegaConf.to_container(parse_args(argv, defaults))
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, value in args.items():
            expected = {"int": int, "float": float, "bool": bool, "str": str}[types[name]]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                args[name] = float(value)
            elif expected is str and not isinstance(value, str):
                args[name] = str(value)
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{name}={value!r}: expected {types[name]}")
        return cls(**args)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
