"""Serving latency of a trained run (doc_cls, tagging or intent_slot), like the PyText paper's Table 2.

For a run directory (exported first if ``export/model.int8.onnx`` is missing):
single-request latency P50/P90/P99 over >= 1,000 real test sentences with one thread, for
(a) PyTorch eager including HF tokenization, (b) ONNX fp32, (c) ONNX int8 — each one text in,
label out, tokenization included; then offline batch throughput (batch 64, 2 threads).
Prints a table and one JSON line.

    python scripts/bench_latency.py --run-dir outputs/runs/DIR [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import nlpkit
from nlpkit.api import load_run_config
from nlpkit.data.readers import BadRowPolicy, read_examples


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms)
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}


def time_each(predict, texts: list[str], warmup: int = 50) -> list[float]:
    for text in texts[:warmup]:
        predict([text])
    samples = []
    for text in texts:
        start = time.perf_counter()
        predict([text])
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def throughput(predict, texts: list[str], batch_size: int = 64, repeats: int = 3) -> float:
    predict(texts[:batch_size])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            predict(texts[i : i + batch_size])
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def split_texts(run_dir: Path, cfg) -> list[str]:
    """The raw texts of the run's test split (validation if none): what a client would send."""
    if str(cfg.task.name) == "doc_cls":
        split_path = cfg.data.test_path or cfg.data.val_path
        return [ex.text for ex in read_examples(split_path, cfg.data, BadRowPolicy("skip"))]
    from nlpkit.tasks import get_task

    dm = get_task(str(cfg.task.name)).datamodule(cfg.data, run_dir)
    dm.load()
    split = "test" if "test" in dm.splits else "val"
    return [" ".join(sentence.tokens) for sentence in dm.splits[split].sentences]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument(
        "--requests", type=int, default=1000, help="single requests to time (cycled test texts)"
    )
    args = parser.parse_args()

    cfg = load_run_config(args.run_dir)
    split_path = cfg.data.test_path or cfg.data.val_path
    texts = split_texts(args.run_dir, cfg)
    texts = (texts * (args.requests // len(texts) + 1))[: max(args.requests, len(texts))]

    export_dir = args.run_dir / "export"
    if not (export_dir / "model.int8.onnx").is_file():
        from nlpkit.export import export_run

        export_run(args.run_dir, quantize=True)
    from nlpkit.serving.onnx_predictor import OnnxPredictor

    torch.set_num_threads(1)
    eager = nlpkit.load(args.run_dir)
    backends = {
        "pytorch_eager": eager.predict,
        "onnx_fp32": OnnxPredictor(export_dir / "model.onnx", threads=1).predict,
        "onnx_int8": OnnxPredictor(export_dir / "model.int8.onnx", threads=1).predict,
    }
    results: dict[str, dict[str, float]] = {}
    for name, predict in backends.items():
        results[name] = percentiles(time_each(predict, texts[: args.requests]))
    torch.set_num_threads(2)
    batch_backends = {
        "pytorch_eager": eager.predict,
        "onnx_fp32": OnnxPredictor(export_dir / "model.onnx", threads=2).predict,
        "onnx_int8": OnnxPredictor(export_dir / "model.int8.onnx", threads=2).predict,
    }
    for name, predict in batch_backends.items():
        results[name]["batch64_sentences_per_s"] = throughput(predict, texts)

    print(
        f"run: {args.run_dir}  ({cfg.task.name}, model {cfg.model.name}, {len(texts)} texts from {split_path})"
    )
    print(f"{'backend':15} {'P50 ms':>8} {'P90 ms':>8} {'P99 ms':>8} {'batch64 sent/s':>15}")
    for name, r in results.items():
        print(
            f"{name:15} {r['p50']:8.3f} {r['p90']:8.3f} {r['p99']:8.3f} {r['batch64_sentences_per_s']:15.0f}"
        )
    speedup = results["pytorch_eager"]["p50"] / results["onnx_fp32"]["p50"]
    print(f"ONNX fp32 P50 speed-up over eager: {speedup:.1f}x")
    summary = {
        "run_dir": str(args.run_dir),
        "task": str(cfg.task.name),
        "model": str(cfg.model.name),
        "requests": args.requests,
        "speedup_p50": speedup,
        **results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
