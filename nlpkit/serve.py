"""``python -m nlpkit.serve model=PATH.onnx [key=value ...]``: the HTTP prediction service.

Settings and defaults are the fields of ``nlpkit.serving.config.ServeConfig`` (host 127.0.0.1, port 8000,
1 worker, 1 onnxruntime thread, batches of up to 32 texts within 2 ms, ...). Once the model is loaded
and the socket bound, one line says where it listens (``port=0`` picks a free port). SIGTERM or
Ctrl-C: stop accepting, finish in-flight requests (up to ``drain_timeout_s``), exit 0. torch is never
imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence

from nlpkit.cli import run_cli
from nlpkit.errors import ConfigError
from nlpkit.serving.config import ServeConfig

log = logging.getLogger("nlpkit.serve")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` contains ':'); a taken port is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: ServeConfig) -> None:
    import uvicorn

    from nlpkit.serving.app import app_from_env, create_app, load_predictor

    common = dict(
        log_level=config.log_level,
        access_log=config.access_log,
        timeout_graceful_shutdown=config.drain_timeout_s,
        server_header=False,
    )
    if config.workers == 1:
        app = create_app(config, load_predictor(config))  # a bad model fails here, before binding
        sock = bind(config.host, config.port)
        _announce(config, sock)
        with _exit_zero_after_drain():
            uvicorn.Server(uvicorn.Config(app, **common)).run(sockets=[sock])
        return
    load_predictor(config)  # fail once, clearly, rather than in every worker
    from uvicorn.supervisors import Multiprocess

    os.environ["NLPKIT_SERVE_CONFIG"] = json.dumps(config.to_dict())
    uv_config = uvicorn.Config(
        f"{app_from_env.__module__}:{app_from_env.__name__}", factory=True, workers=config.workers, **common
    )
    sock = bind(config.host, config.port)
    _announce(config, sock)
    server = uvicorn.Server(uv_config)
    Multiprocess(uv_config, target=server.run, sockets=[sock]).run()


@contextlib.contextmanager
def _exit_zero_after_drain() -> Iterator[None]:
    """uvicorn drains on SIGTERM/SIGINT, restores the previous handlers and re-raises the signal; with
    these no-op handlers in place that re-raise ends nothing, so a clean drain exits with status 0."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _announce(config: ServeConfig, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"nlpkit.serve: listening on http://{shown}:{port} (model {config.model}, workers {config.workers}, "
        f"ort_threads {config.ort_threads}, pid {os.getpid()})",
        flush=True,
    )


def main(argv: Sequence[str]) -> None:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        for name, value in _defaults().items():
            print(f"  {name}={value}")
        return
    serve(ServeConfig.from_args(argv))


def _defaults() -> dict:
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(ServeConfig)}


if __name__ == "__main__":
    run_cli(main)
    sys.exit(0)
