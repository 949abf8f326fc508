"""``python -m nlpkit.serve model=PATH.onnx [key=value ...]``: the HTTP prediction service.

Settings and defaults are the fields of ``nlpkit.serving.config.ServeConfig`` (host 127.0.0.1, port 8000,
1 worker, 1 onnxruntime thread, batches of up to 32 texts, no added wait, ...). Once the model is loaded
and the socket bound, one line says where it listens (``port=0`` picks a free port). SIGTERM or
Ctrl-C: stop accepting, finish in-flight requests (up to ``drain_timeout_s``), exit 0. torch is never
imported.
"""

from __future__ import annotations

import contextlib
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


def uvicorn_options(config: ServeConfig) -> dict:
    """uvicorn settings for ``config``: its HTTP protocol with read deadlines and a connection cap."""
    from nlpkit.serving.protocol import guarded_protocol

    return dict(
        http=guarded_protocol(config.header_timeout_s, config.body_timeout_s, config.max_connections),
        timeout_keep_alive=config.keep_alive_timeout_s,
        ws="none",  # no WebSocket routes: an upgrade request is answered as plain HTTP
        log_level=config.log_level,
        access_log=config.access_log,
        timeout_graceful_shutdown=config.drain_timeout_s,
        server_header=False,
    )


def serve(config: ServeConfig) -> None:
    import uvicorn

    from nlpkit.serving.app import create_app, load_predictor

    if config.workers == 1:
        with _exit_zero_on_signal():
            app = create_app(config, load_predictor(config))  # a bad model fails here, before binding
            sock = bind(config.host, config.port)
            _announce(config, sock)
            uvicorn.Server(uvicorn.Config(app, **uvicorn_options(config))).run(sockets=[sock])
        return
    load_predictor(config)  # fail once, clearly, rather than in every worker
    sock = bind(config.host, config.port)
    _announce(config, sock)
    sys.exit(_run_workers(config, sock))


def _run_worker(settings: dict, sock: socket.socket) -> None:
    """One worker process: its own model, batcher and event loop on the shared listening socket."""
    import uvicorn

    from nlpkit.serving.app import create_app

    os.setpgrp()  # a terminal's Ctrl-C reaches the parent only; the parent asks each worker to drain
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    config = ServeConfig(**settings)
    with _exit_zero_on_signal():
        app = create_app(config)
        uvicorn.Server(uvicorn.Config(app, **uvicorn_options(config))).run(sockets=[sock])


def _run_workers(config: ServeConfig, sock: socket.socket) -> int:
    """Start ``config.workers`` processes; SIGTERM/SIGINT -> SIGTERM to each (they drain). Exit status:
    0 when every worker drained cleanly; 1 when one died on its own (the others are then stopped)."""
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # no fork of a process holding onnxruntime threads
    workers = [
        context.Process(target=_run_worker, args=(config.to_dict(), sock), name=f"serve-{i}")
        for i in range(config.workers)
    ]
    stopping = False

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            worker.start()
        running = list(workers)
        while running:
            for sentinel in wait([worker.sentinel for worker in running]):
                ended = next(worker for worker in running if worker.sentinel == sentinel)
                running.remove(ended)
                if not stopping:
                    log.error("worker %s exited with %s; stopping the others", ended.name, ended.exitcode)
                    stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for worker in workers:
        worker.join()  # a closed sentinel can precede the exit status by a moment
    codes = [worker.exitcode for worker in workers]
    if any(codes):
        log.error("worker exit statuses: %s", codes)
    return 0 if not any(codes) else 1


@contextlib.contextmanager
def _exit_zero_on_signal() -> Iterator[None]:
    """SIGTERM/SIGINT outside uvicorn's watch (while the model loads, or the one uvicorn re-raises after
    it drained) ends the process with status 0: nothing is in flight then."""

    def leave(*_) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGINT, signal.SIGTERM)}
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
