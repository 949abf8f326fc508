"""Load benchmark of ``python -m nlpkit.serve`` against the naive baseline, on loopback only.

Starts two servers in turn on 127.0.0.1 (free ports), each in its own process:
(a) ``nlpkit.serve``: the exported ONNX model, micro-batched, torch-free;
(b) the naive baseline a user might write: the PyTorch eager predictor (``nlpkit.load(run_dir)``)
    in the same web framework (FastAPI + uvicorn), one request at a time.
For each concurrency level (default 1, 16, 64) a closed-loop async client (aiohttp) sends
``{"texts": [one sentence]}`` requests cycling through the test sentences, bounded both in count
(``--requests``) and in time (``--max-seconds``), after a short warm-up. Prints a table, the floor
(with ``--run-dir``: FLOPs per sentence of the PyTorch model ÷ the measured GEMM rate on ``--threads``
threads, as ``bench_latency`` prints it; the rate no server could pass on this machine's arithmetic),
and one JSON line.

    python scripts/bench_serving.py --run-dir RUN [--texts seq.in] [--requests 4000] [--max-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEXTS = ROOT.parent / "shared" / "data" / "atis_slotgated" / "test" / "seq.in"
LOOPBACK = "127.0.0.1"


def cpu_description() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


# ---------------------------------------------------------------- servers


def start_server(args: list[str], log_path: Path, timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start a server process that prints ``listening on http://HOST:PORT``; wait until /health answers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        match = re.search(r"listening on (http://[\d.]+:\d+)", log_path.read_text())
        if match and _healthy(match.group(1)):
            return proc, match.group(1)
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not come up in {timeout_s}s:\n{log_path.read_text()[-3000:]}")


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def _healthy(url: str) -> bool:
    try:
        _get(f"{url}/health")
        return True
    except OSError:
        return False


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def naive_server(run_dir: str, port: int, threads: int) -> None:
    """The baseline: eager PyTorch predictor behind FastAPI, one request at a time (blocking handler)."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from pydantic import create_model

    import nlpkit

    torch.set_num_threads(threads)
    predictor = nlpkit.load(run_dir)
    app = FastAPI()
    PredictRequest = create_model("PredictRequest", texts=(list[str], ...))  # noqa: N806

    async def predict(body) -> dict:
        return {"predictions": predictor.predict(body.texts)}

    predict.__annotations__["body"] = PredictRequest  # this module uses postponed annotations
    app.post("/predict")(predict)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    from nlpkit.serve import bind

    sock = bind(LOOPBACK, port)
    print(f"naive baseline listening on http://{LOOPBACK}:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


# ---------------------------------------------------------------- client


async def load(url: str, texts: list[str], concurrency: int, requests: int, max_seconds: float) -> dict:
    """Closed loop: ``concurrency`` clients, each sending its next request when the last one returned."""
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    payloads = [json.dumps({"texts": [text]}).encode() for text in texts]
    headers = {"Content-Type": "application/json"}
    start = time.perf_counter()
    deadline = start + max_seconds

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            nonlocal next_index
            while next_index < requests and time.perf_counter() < deadline:
                body = payloads[next_index % len(payloads)]
                next_index += 1
                sent = time.perf_counter()
                try:
                    async with session.post(f"{url}/predict", data=body, headers=headers) as response:
                        payload = await response.read()
                        if response.status != 200:
                            errors[f"http_{response.status}"] = errors.get(f"http_{response.status}", 0) + 1
                            continue
                        if b'"predictions"' not in payload:
                            errors["bad_body"] = errors.get("bad_body", 0) + 1
                            continue
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                    continue
                latencies.append((time.perf_counter() - sent) * 1000.0)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    values = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    return {
        "concurrency": concurrency,
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        **{f"p{q}_ms": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99)},
    }


def _run(coro):
    """The client on uvloop when installed (it comes with uvicorn[standard]): less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def measure(url: str, texts: list[str], levels: list[int], requests: int, max_seconds: float) -> list[dict]:
    rows = []
    for concurrency in levels:
        _run(load(url, texts, concurrency, min(requests, 300), 5.0))  # warm-up
        rows.append(_run(load(url, texts, concurrency, requests, max_seconds)))
        print(f"  {url} c={concurrency}: {rows[-1]['rps']} req/s", file=sys.stderr, flush=True)
    return rows


def compute_floor(run_dir: Path, texts: list[str], threads: int) -> dict | None:
    """What ``bench_latency`` prints as the floor: FLOPs per sentence of the run's PyTorch model over
    these texts ÷ this machine's measured GEMM rate on ``threads`` threads. Measured after the servers
    have stopped, so it does not load the machine during the run."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_latency import flops_per_sentence, gemm_rate

    import nlpkit

    flops = flops_per_sentence(nlpkit.load(run_dir), texts[:512])
    if flops is None:
        return None
    rate = gemm_rate(threads)
    return {
        "flops_per_sentence": flops,
        "gemm_flops_per_s": rate,
        "ms_per_sentence": flops / rate * 1000.0,
        "sentences_per_s": rate / flops,
    }


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run-dir", type=Path, help="training run (for the baseline; export/model.onnx served)"
    )
    parser.add_argument("--model", type=Path, help="the .onnx file (default RUN/export/model.onnx)")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="one sentence per line")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--requests", type=int, default=4000, help="requests per level (nlpkit.serve)")
    parser.add_argument("--baseline-requests", type=int, default=1000, help="requests per level (baseline)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time cap per level")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime / torch intra-op threads")
    parser.add_argument("--serve-args", default="", help="extra key=value settings for nlpkit.serve")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.naive_server:
        naive_server(str(args.run_dir), args.port, args.threads)
        return
    model = args.model or (args.run_dir / "export" / "model.onnx" if args.run_dir else None)
    if model is None or not model.is_file():
        parser.error(f"no exported model at {model}: pass --model or run python -m nlpkit.export first")
    texts = [line.strip() for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    levels = [int(level) for level in args.concurrency.split(",")]
    logs = Path(tempfile.mkdtemp(prefix="bench_serving_"))

    serve_cmd = ["-m", "nlpkit.serve", f"model={model}", f"host={LOOPBACK}", "port=0"]
    serve_cmd += [f"ort_threads={args.threads}", *args.serve_args.split()]
    load_before = os.getloadavg()
    proc, url = start_server(serve_cmd, logs / "serve.log")
    try:
        served = measure(url, texts, levels, args.requests, args.max_seconds)
        stats = json.loads(_get(f"{url}/health"))
    finally:
        stop_server(proc)
    mean_batch = round(stats["texts"] / max(stats["batches"], 1), 2)

    baseline: list[dict] = []
    if not args.skip_baseline:
        if args.run_dir is None:
            parser.error("the baseline needs --run-dir (or pass --skip-baseline)")
        naive_cmd = [str(Path(__file__).resolve()), "--naive-server", "--run-dir", str(args.run_dir)]
        naive_cmd += ["--threads", str(args.threads)]
        proc, url = start_server(naive_cmd, logs / "naive.log")
        try:
            baseline = measure(url, texts, levels, args.baseline_requests, args.max_seconds)
        finally:
            stop_server(proc)

    load_after = os.getloadavg()
    floor = compute_floor(args.run_dir, texts, args.threads) if args.run_dir is not None else None
    print(f"\nmachine: {cpu_description()}; client, server and baseline share it; loopback HTTP")
    print(f"1-min load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print(f"nlpkit.serve mean batch: {mean_batch} texts ({stats['batches']} onnxruntime calls)")
    print(f"texts: {args.texts} ({len(texts)} sentences, one per request); model: {model}")
    print(f"nlpkit.serve settings: ort_threads={args.threads} {args.serve_args or '(defaults)'}\n")
    header = (
        f"{'server':<16}{'conc':>5}{'req/s':>9}{'P50 ms':>9}{'P90 ms':>9}{'P99 ms':>9}{'errors':>8}{'n':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, rows in (("nlpkit.serve", served), ("naive eager", baseline)):
        for row in rows:
            print(
                f"{name:<16}{row['concurrency']:>5}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}{row['p90_ms']:>9.2f}"
                f"{row['p99_ms']:>9.2f}{row['errors']:>8}{row['requests']:>7}"
            )
    if floor is not None:
        print(
            f"\nfloor: {floor['flops_per_sentence'] / 1e6:.2f} MFLOP/sentence; GEMM "
            f"{floor['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s on {args.threads} thread(s) -> "
            f"{floor['ms_per_sentence']:.3f} ms/sentence, {floor['sentences_per_s']:,.0f} sentences/s "
            "(the model's arithmetic alone: no HTTP, no string ops, no dispatch)"
        )
        for row in served:  # the time ratio only without queueing (concurrency 1)
            alone = (
                f"; P50 {row['p50_ms'] / floor['ms_per_sentence']:.1f}x the floor's time"
                if row["concurrency"] == 1
                else ""
            )
            print(
                f"  nlpkit.serve c={row['concurrency']}: {row['rps'] / floor['sentences_per_s']:.0%} of the floor's rate{alone}"
            )
    ratios = {}
    for mine, theirs in zip(served, baseline):
        ratios[str(mine["concurrency"])] = round(mine["rps"] / max(theirs["rps"], 1e-9), 2)
        print(f"speed-up at concurrency {mine['concurrency']}: {ratios[str(mine['concurrency'])]}x")
    summary = {
        "machine": cpu_description(),
        "model": str(model),
        "threads": args.threads,
        "serve_args": args.serve_args,
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "mean_batch": mean_batch,
        "nlpkit_serve": served,
        "naive_baseline": baseline,
        "speedup": ratios,
        "floor": floor,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
