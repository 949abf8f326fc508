"""``python -m nlpkit.serve``: real server processes on ephemeral loopback ports, real HTTP clients.

Every server here runs with torch blocked on its import path, so each test also proves the service is
torch-free. Models are tiny, trained for real and exported once per session.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import nlpkit
from nlpkit.errors import ConfigError
from nlpkit.serving import OnnxPredictor
from nlpkit.serving.batcher import MicroBatcher, QueueFull, ShuttingDown
from nlpkit.serving.config import ServeConfig
from tests import conftest

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "wake me up at 7 am",
    "play some jazz",
    "Ünïcode İstanbul ÉCOLE straße",
    "what is the weather in paris tomorrow",
    "remind me to buy milk",
    "turn off the kitchen lights",
    "call mom",
]


@pytest.fixture(scope="session")
def doc_cls_run(tmp_path_factory) -> Path:
    """A tiny CNN document classifier on the built-in data, trained for real and exported."""
    from nlpkit.data.builtin import ensure_builtin
    from nlpkit.export import export_run

    data_dir = ensure_builtin(tmp_path_factory.mktemp("serve_builtin"))
    run_dir = tmp_path_factory.mktemp("serve_doc_cls")
    overrides = ["debug=fast", "logger=csv", "trainer.max_epochs=1", f"paths.builtin_dir={data_dir}"]
    overrides += ["model=cnn", "model.embedding.embed_dim=16", "model.representation.num_filters=8"]
    overrides += ["model.representation.kernel_sizes=[2,3]"]
    nlpkit.train(nlpkit.compose(overrides, output_dir=str(run_dir)))
    export_run(run_dir)
    return run_dir


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(tmp_path: Path, model: Path, *settings: str, block_torch: bool = True) -> Iterator[Server]:
    """``python -m nlpkit.serve model=... port=0 settings...`` until /health answers; stopped after use."""
    base = conftest.torch_blocked_env(tmp_path) if block_torch else {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {**base, "OMP_NUM_THREADS": "1"}
    log = tmp_path / f"serve_{time.monotonic_ns()}.log"
    args = [sys.executable, "-m", "nlpkit.serve", f"model={model}", "port=0", *settings]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    server = None
    try:
        deadline = time.monotonic() + 120
        while server is None:
            assert proc.poll() is None, f"server exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"server did not start:\n{log.read_text()}"
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
            if match:
                try:
                    if httpx.get(f"{match.group(1)}/health", timeout=2).status_code == 200:
                        server = Server(match.group(1), proc, log)
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def model_path(run_dir: Path) -> Path:
    return run_dir / "export" / "model.onnx"


@pytest.fixture(scope="module")
def doc_cls_server(doc_cls_run, tmp_path_factory) -> Iterator[Server]:
    settings = ["max_wait_ms=20", "max_batch_size=8", "max_texts_per_request=20", "max_chars_per_text=300"]
    # max_body_bytes above any schema-valid body (20 x 300 escaped astral characters), so the fuzzer's
    # over-long texts meet the 422 of validation rather than the 413 of the size guard.
    settings += ["max_queue=400", "max_body_bytes=100000"]
    with serve(tmp_path_factory.mktemp("serve"), model_path(doc_cls_run), *settings) as server:
        yield server


@pytest.fixture(scope="module")
def reference(doc_cls_run) -> OnnxPredictor:
    return OnnxPredictor(model_path(doc_cls_run), threads=1)


def assert_same_predictions(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for one, other in zip(got, want):
        assert one.keys() == other.keys()
        for key in one:
            if key.endswith("scores"):
                assert one[key].keys() == other[key].keys()
                assert all(abs(one[key][k] - other[key][k]) < 1e-5 for k in one[key])
            else:
                assert one[key] == other[key], key


# ---------------------------------------------------------------- doc_cls end to end


def test_predictions_match_the_onnx_and_eager_models(doc_cls_server, doc_cls_run, reference):
    response = httpx.post(f"{doc_cls_server.url}/predict", json={"texts": TEXTS})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    predictions = response.json()["predictions"]
    assert_same_predictions(predictions, reference.predict(TEXTS))
    eager = nlpkit.load(doc_cls_run).predict(TEXTS)
    assert [p["label"] for p in predictions] == [p["label"] for p in eager]
    assert all(abs(sum(p["scores"].values()) - 1.0) < 1e-4 for p in predictions)
    assert "torch" not in doc_cls_server.log_text().lower()  # it ran with torch blocked


def test_single_texts_run_on_one_thread_and_batches_on_a_non_spinning_session(doc_cls_run, reference):
    """``OnnxPredictor(path)``: one text on a one-thread session; several on a second session
    (onnxruntime's thread count, spin-waiting off) made at the first such call; ``threads=N`` alone
    keeps one session for both, as the server runs it (``ort_threads``)."""
    predictor = OnnxPredictor(model_path(doc_cls_run))
    single = predictor.session.get_session_options()
    assert single.intra_op_num_threads == 1 and predictor._batch_session is None
    assert_same_predictions(predictor.predict(TEXTS[:1]), reference.predict(TEXTS[:1]))
    assert predictor._batch_session is None  # a single text never makes the batch session
    assert_same_predictions(predictor.predict(TEXTS), reference.predict(TEXTS))
    batch = predictor.batch_session.get_session_options()
    assert batch.intra_op_num_threads == 0  # onnxruntime's count: one per physical core
    assert batch.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    shared = OnnxPredictor(model_path(doc_cls_run), threads=2)
    assert shared.batch_session is shared.session
    assert OnnxPredictor(model_path(doc_cls_run), threads=1, batch_threads=2).batch_threads == 2


def test_metadata_health_and_openapi(doc_cls_server, doc_cls_run):
    meta = httpx.get(f"{doc_cls_server.url}/metadata").json()
    labels = json.loads((doc_cls_run / "labels.json").read_text())["labels"]
    onnx_file = model_path(doc_cls_run)
    assert meta["task"] == "doc_cls" and meta["labels"] == labels and meta["multilabel"] is False
    assert meta["nlpkit_version"] == meta["server_version"] == nlpkit.__version__
    assert meta["model_sha256"] == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert (
        meta["tokenizer_sha256"] == hashlib.sha256((doc_cls_run / "tokenizer.json").read_bytes()).hexdigest()
    )
    assert meta["limits"]["max_texts_per_request"] == 20 and meta["limits"]["on_long_text"] == "reject"
    defaults = {"header_timeout_s": 10.0, "body_timeout_s": 30.0, "keep_alive_timeout_s": 5.0}
    assert {name: meta["limits"][name] for name in defaults} == defaults  # the README's safe defaults
    assert meta["limits"]["max_connections"] == 512
    assert sorted(meta["verified_sha256"]) == ["tokenizer_sha256", "weights_sha256"]
    health = httpx.get(f"{doc_cls_server.url}/health").json()
    assert health["status"] == "ok" and health["queued_texts"] == 0
    schema = httpx.get(f"{doc_cls_server.url}/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["texts"]["maxItems"] == 20 and body["properties"]["texts"]["minItems"] == 1
    assert body["properties"]["texts"]["items"]["maxLength"] == 300
    assert body["additionalProperties"] is False
    assert set(schema["paths"]["/predict"]["post"]["responses"]) == {"200", "413", "415", "422", "503"}
    assert "DocClsPrediction" in schema["components"]["schemas"]


def test_docs_pages_load_only_local_assets(doc_cls_server):
    """``/docs`` (Swagger UI) and ``/redoc`` reference no CDN: every script, style and icon they load
    is served by the server itself, so both work offline."""
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{doc_cls_server.url}{page}").text
        assert "http://" not in html and "https://" not in html and "//cdn" not in html, html
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any(asset.endswith(".js") for asset in assets), html
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), asset
            response = httpx.get(f"{doc_cls_server.url}{asset}")
            assert response.status_code == 200 and len(response.content) > 1000, asset
    assert '"validatorUrl": null' in httpx.get(f"{doc_cls_server.url}/docs").text


def test_concurrent_clients_each_get_their_own_results(doc_cls_server, reference):
    """60 clients at once, each with its own mix of texts: merged into batches, never mixed up."""
    rng = random.Random(0)
    pool = [
        *TEXTS,
        *(f"set a timer for {n} minutes" for n in range(30)),
        *(f"play song {n}" for n in range(30)),
    ]
    requests = [rng.sample(pool, rng.randint(1, 6)) for _ in range(59)] + [pool[:20]]  # last > max_batch_size
    expected = {text: prediction for text, prediction in zip(pool, reference.predict(pool))}
    before = httpx.get(f"{doc_cls_server.url}/health").json()

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(base_url=doc_cls_server.url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(client.post("/predict", json={"texts": r}) for r in requests))

    responses = asyncio.run(send_all())
    for texts, response in zip(requests, responses):
        assert response.status_code == 200, response.text
        assert_same_predictions(response.json()["predictions"], [expected[t] for t in texts])
    after = httpx.get(f"{doc_cls_server.url}/health").json()
    answered = after["requests"] - before["requests"]
    assert answered == len(requests)
    assert after["texts"] - before["texts"] == sum(len(r) for r in requests)
    assert after["batches"] - before["batches"] < 0.75 * answered  # concurrent requests shared batches


LONG = "x" * 301


@pytest.mark.parametrize(
    "request_kwargs, status, message",
    [
        ({"content": b'{"texts": ["a",'}, 422, "Invalid JSON"),
        ({"content": b"\xff\xfe not utf-8"}, 422, "Invalid JSON"),
        ({"json": ["just", "a", "list"]}, 422, "object"),
        ({"json": {"text": ["a"]}}, 422, "texts"),
        ({"json": {"texts": "one string"}}, 422, "valid array"),
        ({"json": {"texts": [1, 2]}}, 422, "valid string"),
        ({"json": {"texts": [None]}}, 422, "valid string"),
        ({"json": {"texts": []}}, 422, "at least 1"),
        ({"json": {"texts": ["a"] * 21}}, 422, "at most 20"),
        ({"json": {"texts": ["ok", LONG]}}, 422, "at most 300 characters"),
        ({"json": {"texts": ["a"], "extra": 1}}, 422, "Extra inputs"),
        ({"content": b'{"texts": ["\\ud800"]}'}, 422, "Invalid JSON"),
        ({"content": json.dumps({"texts": ["a" * 290] * 400}).encode()}, 413, "max_body_bytes"),
        ({"content": b'{"texts": ["a"]}', "headers": {"content-type": "text/plain"}}, 415, "application/json"),
        ({"content": b'{"texts": ["a"]}', "headers": {}}, 415, "no Content-Type header"),
        ({"json": {"texts": ["ok", ""]}}, 422, "empty or only whitespace"),
        ({"json": {"texts": [" \t\n\u3000"]}}, 422, "body.texts.0"),
    ],
    ids=[
        "malformed-json", "invalid-utf8", "not-an-object", "missing-texts", "texts-not-a-list", "numbers",
        "null", "empty-list", "too-many-texts", "text-too-long", "unknown-field", "lone-surrogate",
        "body-too-large", "not-json-content-type", "no-content-type", "empty-text", "whitespace-text",
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_with_a_message(doc_cls_server, request_kwargs, status, message):
    headers = request_kwargs.pop("headers", {"content-type": "application/json"})
    response = httpx.post(f"{doc_cls_server.url}/predict", headers=headers, **request_kwargs)
    assert response.status_code == status, response.text
    assert message in json.dumps(response.json()["detail"])


def test_chunked_oversized_body_and_wrong_method(doc_cls_server):
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"texts": ['
        for _ in range(600):
            yield b'"' + b"a" * 200 + b'",'
        yield b'"a"]}'

    response = httpx.post(
        f"{doc_cls_server.url}/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "max_body_bytes" in response.text
    assert httpx.get(f"{doc_cls_server.url}/predict").status_code == 405
    assert httpx.get(f"{doc_cls_server.url}/nowhere").status_code == 404
    assert httpx.get(f"{doc_cls_server.url}/health").json()["status"] == "ok"  # still serving


def test_openapi_schema_fuzzing_finds_no_server_error(doc_cls_server, tmp_path):
    """schemathesis: valid and invalid bodies from the schema; no 5xx, documented codes and shapes only."""
    args = [f"{doc_cls_server.url}/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "1"]
    args += ["--workers", "1", "--max-time", "15", "--no-shrink"]
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ generated, \d+ passed", proc.stdout), proc.stdout[-2000:]
    assert "Internal Server Error" not in doc_cls_server.log_text()


def test_truncation_and_full_queue(doc_cls_run, reference, tmp_path):
    settings = ["on_long_text=truncate", "max_chars_per_text=10", "max_wait_ms=500", "max_batch_size=64"]
    settings += ["max_queue=4", "max_texts_per_request=4"]
    with serve(tmp_path, model_path(doc_cls_run), *settings) as server:
        cut = httpx.post(f"{server.url}/predict", json={"texts": ["wake me up at 7 am"]}, timeout=30)
        assert cut.status_code == 200
        assert_same_predictions(cut.json()["predictions"], reference.predict(["wake me up"]))

        waiting: dict[str, httpx.Response] = {}
        first = threading.Thread(
            target=lambda: waiting.update(r=httpx.post(f"{server.url}/predict", json={"texts": TEXTS[:4]}))
        )
        first.start()
        deadline = time.monotonic() + 5  # until the 4 texts sit in the queue (held up to 500 ms)
        while httpx.get(f"{server.url}/health").json()["queued_texts"] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = httpx.post(f"{server.url}/predict", json={"texts": ["one more"]})
        first.join()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "max_queue=4" in refused.json()["detail"]
        assert waiting["r"].status_code == 200
        truncated = [text[:10] for text in TEXTS[:4]]
        assert_same_predictions(waiting["r"].json()["predictions"], reference.predict(truncated))
        assert httpx.get(f"{server.url}/health").json()["rejected_queue_full"] == 1


def test_sigterm_drains_in_flight_requests_then_exits(doc_cls_run, reference, tmp_path):
    with serve(tmp_path, model_path(doc_cls_run), "max_wait_ms=800", "max_batch_size=64") as server:
        result: dict[str, httpx.Response] = {}
        client = threading.Thread(
            target=lambda: result.update(
                r=httpx.post(f"{server.url}/predict", json={"texts": TEXTS}, timeout=30)
            )
        )
        client.start()
        deadline = time.monotonic() + 5
        while httpx.get(f"{server.url}/health").json()["queued_texts"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.proc.send_signal(signal.SIGTERM)  # while the request is still held in the batcher
        client.join(timeout=30)
        assert server.proc.wait(timeout=30) == 0
        assert result["r"].status_code == 200
        assert_same_predictions(result["r"].json()["predictions"], reference.predict(TEXTS))
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/health", timeout=2)
        log = server.log_text()
        assert "Shutting down" in log and "stopped after" in log and "Traceback" not in log


def test_two_workers_share_the_port_and_stop_cleanly(doc_cls_run, reference, tmp_path):
    with serve(tmp_path, model_path(doc_cls_run), "workers=2", "max_wait_ms=1") as server:
        deadline = time.monotonic() + 60
        while server.log_text().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(6):
            response = httpx.post(f"{server.url}/predict", json={"texts": TEXTS[:2]})
            assert_same_predictions(response.json()["predictions"], reference.predict(TEXTS[:2]))
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
        log = server.log_text()
    assert log.count("Application startup complete") == 2 and log.count("stopped after") == 2


def test_documented_fastapi_route_answers_like_the_fast_path(doc_cls_run, reference):
    """``POST /predict`` is answered by ``ServingApp`` directly; FastAPI's documented route must agree."""
    from nlpkit.serving.app import create_app

    config = ServeConfig(model=str(model_path(doc_cls_run)), max_wait_ms=1, max_body_bytes=1000)
    app = create_app(config)
    cases = [
        {"json": {"texts": TEXTS[:3]}},
        {"json": {"texts": []}},
        {"content": b"{", "headers": {"content-type": "application/json"}},
        {"content": b'{"texts": ["a"]}', "headers": {"content-type": "text/plain"}},
        {"content": json.dumps({"texts": ["a" * 600] * 2}), "headers": {"content-type": "application/json"}},
        {"content": b'{"texts": ["a"]}', "headers": {}},
        {"json": {"texts": ["a", "  "]}},
    ]

    async def answers(target) -> list[tuple[int, dict]]:
        transport = httpx.ASGITransport(app=target)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            replies = [await client.post("/predict", **case) for case in cases]
        return [(reply.status_code, reply.json()) for reply in replies]

    async def main() -> tuple[list, list]:
        async with app.api.router.lifespan_context(app.api):  # starts and stops the batcher
            return await answers(app), await answers(app.api)

    fast, documented = asyncio.run(main())
    assert [status for status, _ in fast] == [200, 422, 422, 415, 413, 415, 422]
    assert [status for status, _ in documented] == [200, 422, 422, 415, 413, 415, 422]
    assert_same_predictions(fast[0][1]["predictions"], reference.predict(TEXTS[:3]))
    assert_same_predictions(documented[0][1]["predictions"], reference.predict(TEXTS[:3]))
    assert [body for _, body in fast[1:]] == [body for _, body in documented[1:]]


def test_cli_refuses_bad_settings_and_missing_model(tmp_path, doc_cls_run):
    proc = subprocess.run(
        [sys.executable, "-m", "nlpkit.serve", f"model={tmp_path / 'nope.onnx'}", "port=0"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "error:" in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    from nlpkit.serve import bind, main

    with pytest.raises(ConfigError, match="valid keys"):
        main(["model=x.onnx", "prot=80"])
    with pytest.raises(ConfigError, match="missing required"):
        main(["port=80"])
    with pytest.raises(ConfigError, match="choose one of reject, truncate"):
        ServeConfig.from_args(["model=x", "on_long_text=maybe"])
    with pytest.raises(ConfigError, match="positive integer"):
        ServeConfig.from_args(["model=x", "max_batch_size=0"])
    with pytest.raises(ConfigError, match="header_timeout_s=0.0: must be a positive number of seconds"):
        ServeConfig.from_args(["model=x", "header_timeout_s=0"])
    with pytest.raises(ConfigError, match="max_connections"):
        ServeConfig.from_args(["model=x", "max_connections=0"])
    with pytest.raises(ConfigError, match="max_queue"):
        ServeConfig.from_args(["model=x", "max_queue=8", "max_texts_per_request=16"])
    config = ServeConfig.from_args(["model=x", "max_wait_ms=3", "access_log=true"])
    assert config.host == "127.0.0.1" and config.max_wait_ms == 3.0 and config.access_log is True
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


# ---------------------------------------------------------------- slow and silent clients (slowloris)


@dataclass
class Attack:
    """One client connection that sends ``payload`` at 1 byte/s (nothing at all when empty)."""

    payload: bytes
    opened: float = 0.0
    closed_after: float | None = None  # seconds from connect until the server closed it
    received: bytes = b""

    def run(self, host: str, port: int, give_up_s: float) -> None:
        import socket

        with socket.create_connection((host, port), timeout=5) as sock:
            self.opened = time.monotonic()
            sock.settimeout(1.0)  # each recv is also the 1 s pause between two bytes
            sent = 0
            while time.monotonic() - self.opened < give_up_s:
                if sent < len(self.payload):
                    try:
                        sock.sendall(self.payload[sent : sent + 1])
                        sent += 1
                    except OSError:
                        break
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:  # reset by the server
                    break
                if not chunk:
                    break
                self.received += chunk
            else:
                return  # still open: closed_after stays None
            self.closed_after = time.monotonic() - self.opened


def test_silent_and_slow_connections_are_closed_while_health_stays_fast(doc_cls_run, tmp_path):
    """Silent connections, headers and bodies at 1 byte/s are closed at their deadline (408 where a
    request had begun), and ``/health`` answers quickly all along; one connection over
    ``max_connections`` gets 503 at once."""
    timeout_s = 2.0
    settings = [f"header_timeout_s={timeout_s:g}", f"body_timeout_s={timeout_s:g}", "max_connections=16"]
    head = (
        b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n"
    )
    with serve(tmp_path, model_path(doc_cls_run), *settings) as server:
        host, port = server.url.removeprefix("http://").split(":")
        attacks = [Attack(b"") for _ in range(4)]  # silent
        attacks += [Attack(head) for _ in range(3)]  # slow headers
        slow_bodies = [Attack(b'{"texts": ["wake me up"]}') for _ in range(3)]
        threads = [threading.Thread(target=a.run, args=(host, int(port), 30.0)) for a in attacks]

        def slow_body(attack: Attack) -> None:
            import socket

            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(head)  # complete headers at once, then the body byte by byte
                attack.opened = time.monotonic()
                sock.settimeout(1.0)
                for byte in attack.payload:
                    try:
                        sock.sendall(bytes([byte]))
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    attack.received += chunk
                    if not chunk:
                        break
                attack.closed_after = time.monotonic() - attack.opened

        threads += [threading.Thread(target=slow_body, args=(a,)) for a in slow_bodies]
        for thread in threads:
            thread.start()
        latencies = []
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while any(thread.is_alive() for thread in threads):
                started = time.monotonic()
                assert client.get("/health").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)
                assert len(latencies) < 2000, "attack connections still open"
        for thread in threads:
            thread.join()
        log = server.log_text()
    everyone = attacks + slow_bodies
    # closed at the deadline: not before it, and well before the 30 s the clients would keep going
    for attack in everyone:
        assert attack.closed_after is not None and timeout_s - 0.2 <= attack.closed_after < timeout_s + 8, (
            attack
        )
    assert all(attack.received == b"" for attack in attacks[:4])  # nothing sent, nothing answered
    for attack in attacks[4:] + slow_bodies:
        assert attack.received.startswith(b"HTTP/1.1 408 Request Timeout"), attack.received
    assert b"header_timeout_s" in attacks[4].received and b"body_timeout_s" in slow_bodies[0].received
    assert max(latencies) < 1.0 and len(latencies) >= 10, latencies
    assert "Traceback" not in log


def test_connections_over_max_connections_are_refused_then_served_again(doc_cls_run, tmp_path):
    import socket

    settings = ["header_timeout_s=3", "max_connections=6"]
    with serve(tmp_path, model_path(doc_cls_run), *settings) as server:
        host, port = server.url.removeprefix("http://").split(":")
        silent = [socket.create_connection((host, int(port)), timeout=5) for _ in range(6)]
        time.sleep(0.3)  # all six accepted
        with socket.create_connection((host, int(port)), timeout=5) as extra:
            refused = extra.recv(4096)
        assert refused.startswith(b"HTTP/1.1 503") and b"max_connections=6" in refused
        for sock in silent:
            sock.settimeout(15)
            assert sock.recv(4096) == b""  # closed by the header deadline
            sock.close()
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


# ---------------------------------------------------------------- an exported file is untrusted input


def tampered_copy(run_dir: Path, tmp_path: Path, edit) -> Path:
    """A copy of ``run_dir`` whose ``export/model.onnx`` metadata went through ``edit(dict) -> dict``."""
    import shutil

    import onnx

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    model = onnx.load(model_path(copy))
    meta = edit({prop.key: prop.value for prop in model.metadata_props})
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, model_path(copy))
    return copy


def rotated(names: str) -> str:
    """The same names, each at another position."""
    listed = json.loads(names)
    return json.dumps(listed[1:] + listed[:1])


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in last, last


def cli(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**conftest.torch_blocked_env(tmp_path), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


TAGS_HEAD = {"kind": "tags", "outputs": {"tokens": "tokens", "tags": "tags"}, "names": "labels"}

TAMPERED = {
    "labels-not-a-list": (lambda m: {**m, "labels": "123"}, "metadata 'labels' must be a JSON list of names"),
    "labels-not-json": (lambda m: {**m, "labels": "[oops"}, "metadata 'labels' is not JSON"),
    "too-few-labels": (
        lambda m: {**m, "labels": json.dumps(json.loads(m["labels"])[:2])},
        "metadata 'labels' has 2 names but the graph outputs",
    ),
    "labels-reordered": (lambda m: {**m, "labels": rotated(m["labels"])}, "metadata 'labels' does not match"),
    "duplicate-label": (
        lambda m: {**m, "labels": json.dumps(json.loads(m["labels"])[:1] * 2)},
        "names the same label twice",
    ),
    "no-task": (lambda m: {k: v for k, v in m.items() if k != "task"}, "metadata 'task' is missing"),
    # a file exported before the 'heads' entry is shaped by its task: another task's outputs are missing
    "task-of-another-graph": (
        lambda m: {**{k: v for k, v in m.items() if k != "heads"}, "task": "tagging"},
        "graph has no output 'tokens'",
    ),
    "heads-of-another-graph": (
        lambda m: {**m, "heads": json.dumps([TAGS_HEAD])},
        "graph has no output 'tokens', 'tags', which metadata 'heads' needs",
    ),
    "multilabel-not-json": (lambda m: {**m, "multilabel": "yes"}, "metadata 'multilabel' is not JSON"),
    "hash-not-hex": (lambda m: {**m, "tokenizer_sha256": "abc"}, "'tokenizer_sha256' is not a SHA-256"),
    "weights-changed": (
        lambda m: {**m, "weights_sha256": "0" * 64},
        "'weights_sha256' does not match",
    ),
    "weights-file-outside-the-run": (
        lambda m: {**m, "weights_file": "../../../etc/passwd"},
        "'weights_file' must be a path inside the run directory",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_export_metadata_is_one_error_line_in_serve_and_predict(doc_cls_run, tmp_path, case):
    """``python -m nlpkit.serve`` and ``python -m nlpkit.predict backend=onnx`` (default settings) check the
    exported file's metadata against its graph and the run's files, and refuse it in one line."""
    edit, message = TAMPERED[case]
    run = tampered_copy(doc_cls_run, tmp_path, edit)
    served = cli(tmp_path, "nlpkit.serve", f"model={model_path(run)}", "port=0")  # a hang: TimeoutExpired
    assert_one_error_line(served, str(model_path(run)), message)
    (tmp_path / "in.txt").write_text("wake me up at 7 am\n")
    args = [
        f"run_dir={run}",
        f"input={tmp_path / 'in.txt'}",
        f"output={tmp_path / 'out.jsonl'}",
        "backend=onnx",
    ]
    assert_one_error_line(cli(tmp_path, "nlpkit.predict", *args), str(model_path(run)), message)
    assert not (tmp_path / "out.jsonl").exists()


def test_untampered_copy_is_verified_and_served_alone_too(doc_cls_run, tmp_path):
    """The control: the same copy without edits loads with its hashes verified; the file moved out of
    its run directory still loads (nothing to compare its hashes with)."""
    run = tampered_copy(doc_cls_run, tmp_path, lambda meta: meta)
    assert sorted(OnnxPredictor(run).verified_files) == ["tokenizer_sha256", "weights_sha256"]
    alone = tmp_path / "deployed" / "model.onnx"
    alone.parent.mkdir()
    alone.write_bytes(model_path(run).read_bytes())
    assert OnnxPredictor(alone).verified_files == {}
    assert OnnxPredictor(alone).predict(["play some jazz"]) == OnnxPredictor(run).predict(["play some jazz"])


def label_head(**entries) -> dict:
    """The doc_cls export's ``heads`` entry, with ``entries`` changed."""
    head = {
        "kind": "label",
        "outputs": {"label": "label", "scores": "scores"},
        "keys": {"label": "label", "scores": "scores"},
        "names": "labels",
        "noun": "label",
    }
    return {**head, **entries}


HEADS_TAMPERED = {
    "not-json": ("[oops", "metadata 'heads' is not JSON"),
    "empty": ("[]", "metadata 'heads' must be a non-empty JSON list of heads"),
    "unknown-kind": (
        json.dumps([label_head(kind="ranking")]),
        "metadata 'heads' head 0 has kind 'ranking', not a head kind this server shapes (label, multilabel",
    ),
    "kind-not-a-string": (
        json.dumps([label_head(kind=["label"])]),
        "head 0 has kind ['label'], not a head kind",
    ),
    "output-of-another-type": (
        json.dumps([label_head(outputs={"label": "scores", "scores": "scores"})]),
        "graph output 'scores' is tensor(float) of rank 2; the 'label' head of metadata 'heads' reads it "
        "as its 'label': tensor(string) of rank 1",
    ),
    "missing-role": (
        json.dumps([label_head(outputs={"label": "label"})]),
        "head 0 (label) 'outputs': its roles are ['label', 'scores'] (missing ['scores'])",
    ),
    "unknown-entry": (
        json.dumps([label_head(colour="red")]),
        "head 0 (label) has unknown entries ['colour']",
    ),
    "names-field-missing": (json.dumps([label_head(names="classes")]), "metadata 'classes' is missing"),
    "one-key-twice": (
        json.dumps([label_head(), label_head(keys={"label": "best"})]),
        "response key 'scores' is written by head 0 and head 1",
    ),
    "value-head-over-scores": (
        json.dumps([{"kind": "value", "outputs": {"value": "scores"}}]),
        "graph output 'scores' is tensor(float) of rank 2; the 'value' head of metadata 'heads' reads it",
    ),
}


@pytest.mark.parametrize("case", sorted(HEADS_TAMPERED))
def test_heads_metadata_is_checked_against_the_graph(doc_cls_run, tmp_path, case):
    """The ``heads`` entry is untrusted too: each way it can be wrong is an ArtifactError naming it."""
    from nlpkit.errors import ArtifactError

    heads, message = HEADS_TAMPERED[case]
    run = tampered_copy(doc_cls_run, tmp_path, lambda meta: {**meta, "heads": heads})
    with pytest.raises(ArtifactError, match=re.escape(message)):
        OnnxPredictor(model_path(run))


def test_multilabel_field_must_agree_with_the_heads(doc_cls_run, tmp_path):
    from nlpkit.errors import ArtifactError

    run = tampered_copy(doc_cls_run, tmp_path, lambda meta: {**meta, "multilabel": "true"})
    with pytest.raises(
        ArtifactError, match="metadata 'multilabel' is true but metadata 'heads' has no multilabel"
    ):
        OnnxPredictor(model_path(run))


def test_the_export_writes_heads_and_a_file_without_them_serves_the_same(doc_cls_run, reference, tmp_path):
    """A file exported before the ``heads`` entry existed (the same file without it) is shaped by
    ``legacy_heads`` of its task: the same heads, the same predictions and response schema."""
    from nlpkit.serving.app import create_app

    assert json.loads(reference.metadata["heads"]) == [label_head()]
    old = tampered_copy(doc_cls_run, tmp_path, lambda m: {k: v for k, v in m.items() if k != "heads"})
    legacy = OnnxPredictor(model_path(old), threads=1)
    assert [h.describe() for h in legacy.heads] == [h.describe() for h in reference.heads]
    assert legacy.predict(TEXTS) == reference.predict(TEXTS)
    schemas = [
        create_app(ServeConfig(model=str(model_path(run)))).api.openapi()["components"]["schemas"]
        for run in (doc_cls_run, old)
    ]
    assert schemas[0] == schemas[1] and "DocClsPrediction" in schemas[0]


# ---------------------------------------------------------------- a value head: one number per text


def value_model(path: Path, scores: dict[str, float], heads: list[dict] | None = None) -> Path:
    """A hand-made nlpkit-style file with one ``value`` head: ``text`` -> ``score`` float ``[batch]``,
    the score of each known text (``LabelEncoder``; -1 for any other), as a text-regression export
    would write it (no torch, no training: the shaping and schema are what is tested)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(
        "LabelEncoder", ["text"], ["score"], domain="ai.onnx.ml",
        keys_strings=list(scores), values_floats=list(scores.values()), default_float=-1.0,
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "value",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    heads = heads or [
        {"kind": "value", "outputs": {"value": "score"}, "keys": {"value": "score"}, "noun": "score"}
    ]
    meta = {"task": "text_regression", "heads": json.dumps(heads), "nlpkit_version": nlpkit.__version__}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def test_a_value_head_is_served_with_no_task_specific_code(tmp_path):
    """A task serving didn't know about (``text_regression``) with a ``value`` head: ``OnnxPredictor``
    and the torch-blocked HTTP server answer ``{"score": float}``, documented as such."""
    scores = {"great film": 4.5, "dull": 1.25, "fine I guess": 3.0}
    model = value_model(tmp_path / "model" / "model.onnx", scores)
    texts = [*scores, "never seen"]
    want = [{"score": value} for value in [*scores.values(), -1.0]]
    assert OnnxPredictor(model).predict(texts) == want
    with serve(tmp_path, model, "max_wait_ms=1") as server:
        answer = httpx.post(f"{server.url}/predict", json={"texts": texts})
        meta = httpx.get(f"{server.url}/metadata").json()
        schema = httpx.get(f"{server.url}/openapi.json").json()
    assert answer.status_code == 200 and answer.json() == {"predictions": want}
    assert meta["task"] == "text_regression" and meta["labels"] == [] and meta["intents"] is None
    assert meta["multilabel"] is False
    documented = schema["components"]["schemas"]["TextRegressionPrediction"]
    assert documented["properties"]["score"]["type"] == "number"
    assert documented["required"] == ["score"]
    # renamed by the export: the key it declares
    renamed = [
        {"kind": "value", "outputs": {"value": "score"}, "keys": {"value": "relevance"}, "noun": "relevance"}
    ]
    assert OnnxPredictor(value_model(tmp_path / "renamed.onnx", scores, renamed)).predict(["dull"]) == [
        {"relevance": 1.25}
    ]


# ---------------------------------------------------------------- tagging and joint intent-slot models

WORD_TINY = [*conftest.WORD_TINY, "logger=csv", "debug=fast"]
TASK_OVERRIDES = {
    "tagging": ["task=tagging", *WORD_TINY],
    "intent_slot": [
        "task=intent_slot",
        *WORD_TINY,
        "model.pooling.attention_dim=8",
        "model.doc_decoder.hidden_dims=[8]",
    ],
    # task=doc_cls over word-level features (what task=intent was): a doc_cls file, served as one
    "doc_cls_word": [
        "task=doc_cls",
        "featurizer=word",
        "model=pooled_bilstm",
        *WORD_TINY,
        "model.pooling.attention_dim=8",
        "model.decoder.hidden_dims=[8]",
    ],
}
WORD_TEXTS = [
    "wake me up at 7 am",
    "play some jazz by miles davis",
    "show me flights from boston to denver on monday",
    "Ünïcode İstanbul straße",
    "remind me to call mom tomorrow at noon",
]


@pytest.fixture(scope="module", params=sorted(TASK_OVERRIDES))
def word_task_run(request, tmp_path_factory) -> tuple[str, Path]:
    """A tiny tagging / intent-slot run on the built-in data, exported."""
    from nlpkit.data.builtin import ensure_builtin
    from nlpkit.export import ExportError, export_run

    task = request.param
    data_dir = ensure_builtin(tmp_path_factory.mktemp(f"serve_{task}_builtin"))
    run_dir = tmp_path_factory.mktemp(f"serve_{task}")
    overrides = [*TASK_OVERRIDES[task], f"paths.builtin_dir={data_dir}", "trainer.max_epochs=1"]
    nlpkit.train(nlpkit.compose(overrides, output_dir=str(run_dir)))
    try:
        export_run(run_dir)
    except ExportError as err:
        if "not available" in str(err):
            pytest.skip(f"ONNX export of task={task} not on this branch yet: {err}")
        raise
    return task, run_dir


def test_word_level_models_are_served(word_task_run, tmp_path):
    from nlpkit.serving.schemas import prediction_model

    name, run_dir = word_task_run
    task = "doc_cls" if name == "doc_cls_word" else name
    reference = OnnxPredictor(model_path(run_dir), threads=1).predict(WORD_TEXTS)
    eager = nlpkit.load(run_dir).predict(WORD_TEXTS)
    with serve(tmp_path, model_path(run_dir), "max_wait_ms=5") as server:
        response = httpx.post(f"{server.url}/predict", json={"texts": WORD_TEXTS})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        meta = httpx.get(f"{server.url}/metadata").json()
        schema = httpx.get(f"{server.url}/openapi.json").json()
        singles = [
            httpx.post(f"{server.url}/predict", json={"texts": [t]}).json()["predictions"][0]
            for t in WORD_TEXTS
        ]
        blank = httpx.post(f"{server.url}/predict", json={"texts": ["play jazz", " \t", ""]})
    assert_same_predictions(predictions, reference)
    assert_same_predictions(singles, reference)  # alone or batched with others: the same answer
    documented = prediction_model(task)
    for prediction in predictions:
        documented.model_validate(prediction)  # the OpenAPI response schema is what is sent
    assert documented.__name__ in schema["components"]["schemas"]
    assert meta["task"] == task
    assert set(meta["verified_sha256"]) == {"weights_sha256", "tokenizer_sha256", "chars_sha256"}
    assert_blank_texts_refused(blank, OnnxPredictor(model_path(run_dir), threads=1))
    if task == "doc_cls":
        assert meta["labels"] and [p["label"] for p in predictions] == [w["label"] for w in eager]
        return
    labels_key = "tags" if task == "tagging" else "slots"
    for prediction, want in zip(predictions, eager):
        assert len(prediction[labels_key]) == len(prediction["tokens"])
        assert len(prediction["tokens"]) == len(want["tokens"])
        assert prediction[labels_key] == want[labels_key]
    if task != "tagging":
        assert meta["intents"] and all(p["intent"] in meta["intents"] for p in predictions)
        assert [p["intent"] for p in predictions] == [w["intent"] for w in eager]


def test_word_level_files_without_heads_metadata_are_shaped_as_before(word_task_run, tmp_path):
    """``legacy_heads`` of each word-level task is exactly what its export now writes in ``heads``."""
    _, run_dir = word_task_run
    new = OnnxPredictor(model_path(run_dir), threads=1)
    old_run = tampered_copy(run_dir, tmp_path, lambda m: {k: v for k, v in m.items() if k != "heads"})
    old = OnnxPredictor(model_path(old_run), threads=1)
    assert [h.describe() for h in old.heads] == json.loads(new.metadata["heads"])
    assert [h.describe() for h in new.heads] == json.loads(new.metadata["heads"])
    assert old.predict(WORD_TEXTS) == new.predict(WORD_TEXTS)


def assert_blank_texts_refused(response: httpx.Response, predictor: OnnxPredictor) -> None:
    """One behaviour for every task: a text that is empty or only whitespace is refused by position,
    422 over HTTP (for ``["play jazz", " \\t", ""]``), ``EmptyTextError`` from ``OnnxPredictor``."""
    from nlpkit.serving.onnx_predictor import EmptyTextError

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [problem["loc"] for problem in detail] == ["body.texts.1", "body.texts.2"]
    assert all("empty or only whitespace" in problem["msg"] for problem in detail)
    for blank in ["", " ", "\t\n", "\u3000\u00a0", "\x1c"]:
        with pytest.raises(EmptyTextError, match=r"texts\[1\] is empty or only whitespace"):
            predictor.predict(["play jazz", blank])


def test_blank_texts_are_refused_by_the_doc_cls_server_and_predictor(doc_cls_server, reference):
    blank = httpx.post(f"{doc_cls_server.url}/predict", json={"texts": ["play jazz", " \t", ""]})
    assert_blank_texts_refused(blank, reference)


# ---------------------------------------------------------------- the batcher alone


def run_batcher(predict, calls: list[list[str]], **settings) -> list:
    async def main() -> list:
        batcher = MicroBatcher(
            predict, **{"max_batch_size": 4, "max_wait_ms": 20, "max_queue": 100, **settings}
        )
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(texts) for texts in calls), return_exceptions=True)
        await batcher.close()
        with pytest.raises(ShuttingDown):
            await batcher.submit(["late"])
        return [results, batcher.stats]

    return asyncio.run(main())


def test_batcher_merges_and_splits_back_by_position():
    seen: list[list[str]] = []

    def predict(texts: list[str]) -> list[dict]:
        seen.append(list(texts))
        return [{"echo": text} for text in texts]

    calls = [[f"r{i}t{j}" for j in range(1 + i % 3)] for i in range(10)] + [[f"big{j}" for j in range(7)]]
    results, stats = run_batcher(predict, calls)
    for texts, result in zip(calls, results):
        assert result == [{"echo": text} for text in texts]
    assert all(len(batch) <= 4 for batch in seen if not batch[0].startswith("big"))
    assert ["big0", "big1", "big2", "big3", "big4", "big5", "big6"] in seen  # a larger request runs alone
    assert stats["requests"] == len(calls) and stats["batches"] == len(seen) < len(calls)


def test_batcher_isolates_a_failing_request():
    def predict(texts: list[str]) -> list[dict]:
        if "boom" in texts:
            raise RuntimeError("model failed on boom")
        return [{"echo": text} for text in texts]

    results, _ = run_batcher(predict, [["a"], ["boom"], ["b", "c"]])
    assert results[0] == [{"echo": "a"}] and results[2] == [{"echo": "b"}, {"echo": "c"}]
    assert isinstance(results[1], RuntimeError)


def test_batcher_rejects_a_wrong_number_of_results_and_a_full_queue():
    results, _ = run_batcher(lambda texts: [{}], [["a", "b"]])
    assert isinstance(results[0], RuntimeError) and "1 results for 2 texts" in str(results[0])
    results, stats = run_batcher(lambda texts: [{}] * len(texts), [["a"] * 3, ["b"] * 3], max_queue=5)
    assert results[0] == [{}] * 3 and isinstance(results[1], QueueFull)
    assert stats["rejected_queue_full"] == 1
