"""Serving latency of a trained run (any task nlpkit exports), like the PyText paper's Table 2, measured
so that machine load cannot mislead.

For a run directory (exported first if ``export/model.int8.onnx`` is missing), backends compared:
PyTorch eager (``nlpkit.load``, tokenization included), the ONNX fp32 file, the ONNX int8 file, and any
``--baseline LABEL=FILE.onnx`` (e.g. an export written by an older commit). Each is one raw text in,
labels out.

- Single requests, one thread: the backends are **interleaved request by request** (the order
  rotates per request), over ``--requests`` real test texts, ``--repeats`` times. Per repeat, each
  backend's P50/P90/P99; printed: the median over repeats (and the min of P50), and each backend's
  P50 ratio to ``onnx_fp32`` (min / median over repeats).
- Batch 64, two threads (``--batch-threads``; ONNX: ``OnnxPredictor``'s non-spinning batch session):
  ``predict(512 texts, batch_size=64)`` calls interleaved the same way
  (a predictor sorts by length inside a call); sentences/s per backend (median, min).
- Noise: an A/A run (``--baseline copy=`` the fp32 file itself) measured 0.94 between the two copies
  on a loaded machine; ratios within ~6 % of 1 are not differences.
- The floor beside each figure: FLOPs per sentence of the PyTorch model on these texts (matmuls,
  convolutions and LSTMs) divided by this machine's measured single-thread GEMM rate.

    python scripts/bench_latency.py --run-dir outputs/runs/DIR [--requests 1000] [--repeats 3]
        [--baseline old=/path/model.onnx] [--no-eager]

A ``task=semantic_parse`` run (the RNNG parser) has no ONNX file: its mode compares the Python parser
(``nlpkit.load``) with the native binary (``export/native/``, exported first if missing; ``make native``),
one thread each, batch 1, the TOP test sentences, interleaved request by request as above, printed
beside the paper's Table 2 RNNG rows (``parser_main``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

import nlpkit
from nlpkit.api import load_run_config
from nlpkit.data.readers import BadRowPolicy, read_examples

Predict = Callable[..., object]  # predict(texts, batch_size=...)
REFERENCE = "onnx_fp32"


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(samples_ms)
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}


def interleaved_single(backends: dict[str, Predict], texts: list[str]) -> dict[str, list[float]]:
    """One pass: every text sent to every backend, the backends' order rotating per text."""
    names = list(backends)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i, text in enumerate(texts):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            backends[name]([text])
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return samples


def interleaved_batches(
    backends: dict[str, Predict], texts: list[str], batch_size: int, calls_per_chunk: int = 8
) -> dict[str, float]:
    """One pass of offline batch inference: sentences/s per backend. Each call is
    ``predict(chunk, batch_size=batch_size)`` on ``calls_per_chunk`` batches' worth of texts (so a
    predictor's length sorting applies, as for a user's list), chunks interleaved like single requests."""
    names = list(backends)
    seconds = dict.fromkeys(names, 0.0)
    size = batch_size * calls_per_chunk
    for i, start_row in enumerate(range(0, len(texts), size)):
        chunk = texts[start_row : start_row + size]
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            backends[name](chunk, batch_size=batch_size)
            seconds[name] += time.perf_counter() - start
    return {name: len(texts) / seconds[name] for name in names}


def lstm_flops(module: torch.nn.LSTM, packed_or_padded) -> int:
    """Multiply-adds x 2 of one LSTM call: 4 gates x (input + hidden) x hidden per token, direction
    and layer (FlopCounterMode does not count ``aten.lstm``)."""
    data = getattr(packed_or_padded, "data", packed_or_padded)
    tokens = data.shape[0] if data.dim() == 2 else data.shape[0] * data.shape[1]
    directions = 2 if module.bidirectional else 1
    flops, width = 0, module.input_size
    for _ in range(module.num_layers):
        flops += 2 * 4 * module.hidden_size * (width + module.hidden_size) * tokens * directions
        width = module.hidden_size * directions
    return flops


def flops_per_sentence(predictor, texts: list[str]) -> float | None:
    """FLOPs per sentence of the eager predictor over ``texts`` (batch 64): matmuls and convolutions by
    torch's FlopCounterMode, LSTMs by ``lstm_flops``. None if the predictor holds no ``model``."""
    from torch.utils.flop_counter import FlopCounterMode

    model = getattr(predictor, "model", None)
    if not isinstance(model, torch.nn.Module):
        return None
    counted = [0]
    hooks = [
        m.register_forward_hook(
            lambda mod, args, out: counted.__setitem__(0, counted[0] + lstm_flops(mod, args[0]))
        )
        for m in model.modules()
        if isinstance(m, torch.nn.LSTM)
    ]
    try:
        with FlopCounterMode(display=False) as counter:
            predictor.predict(texts)
    finally:
        for hook in hooks:
            hook.remove()
    return (counter.get_total_flops() + counted[0]) / len(texts)


def gemm_rate(threads: int, size: int = 512, seconds: float = 1.0) -> float:
    """Measured fp32 GEMM FLOP/s of this machine with ``threads`` threads (a [size, size] x [size, size]
    product repeated for ``seconds``; the best of three)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            count += 1
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start))
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


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}


#: the PyText paper's Table 2, RNNG latency (ms): P50, P90, P99
PAPER_RNNG = {"paper PyTorch": (19.74, 28.53, 36.37), "paper C++": (18.73, 25.47, 32.63)}


def parser_main(args, cfg) -> None:
    """The RNNG parser: Python (``nlpkit.load``) vs the native binary over a pipe, one thread, batch 1."""
    from nlpkit.data.readers import BadRowPolicy
    from nlpkit.tasks.semantic_parse.data import read_top
    from nlpkit.tasks.semantic_parse.native import NATIVE_DIR, NativeParser

    split_path = cfg.data.test_path or cfg.data.val_path
    texts = [" ".join(e.tokens) for e in read_top(split_path, int(cfg.data.max_open), BadRowPolicy("skip"))]
    requests = (texts * (args.requests // len(texts) + 1))[: args.requests]
    native_dir = args.run_dir / "export" / NATIVE_DIR
    if not (native_dir / "model.txt").is_file():
        from nlpkit.export import export_run

        export_run(args.run_dir)
    torch.set_num_threads(1)
    python = nlpkit.load(args.run_dir)
    with NativeParser(native_dir, threads=1) as native:
        backends: dict[str, Predict] = {
            "python": python.predict,
            "native": lambda batch: [native.parse(text) for text in batch],
        }
        checked = requests[:200]
        agree = sum(python.predict([t]) == backends["native"]([t]) for t in checked)
        for predict in backends.values():  # warm-up
            for text in requests[:50]:
                predict([text])
        repeats = [
            {name: percentiles(samples) for name, samples in interleaved_single(backends, requests).items()}
            for _ in range(args.repeats)
        ]
    rows = {
        name: tuple(statistics.median(r[name][q] for r in repeats) for q in ("p50", "p90", "p99"))
        for name in backends
    }
    ratio = [r["native"]["p50"] / r["python"]["p50"] for r in repeats]
    print(
        f"run: {args.run_dir}  (semantic_parse RNNG; {len(requests)} requests x {args.repeats} repeats, "
        f"interleaved, one thread, batch 1, {split_path}); trees identical on the first {len(checked)}: {agree}"
    )
    print(f"{'':16} {'P50 ms':>8} {'P90 ms':>8} {'P99 ms':>8}")
    for name, (p50, p90, p99) in {**PAPER_RNNG, **{f"nlpkit {k}": v for k, v in rows.items()}}.items():
        print(f"{name:16} {p50:8.2f} {p90:8.2f} {p99:8.2f}")
    print(f"native/python P50: min {min(ratio):.2f}, median {statistics.median(ratio):.2f} over repeats")
    summary = {
        "run_dir": str(args.run_dir),
        "task": "semantic_parse",
        "requests": len(requests),
        "repeats": args.repeats,
        "identical_trees_checked": [agree, len(checked)],
        "backends": {name: dict(zip(("p50", "p90", "p99"), v)) for name, v in rows.items()},
        "native_p50_ratio": summarize(ratio),
    }
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument(
        "--requests", type=int, default=1000, help="single requests per repeat (cycled test texts)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-threads", type=int, default=2, help="threads of the batch calls")
    parser.add_argument(
        "--baseline", action="append", default=[], help="LABEL=FILE.onnx, another file to compare"
    )
    parser.add_argument("--no-eager", action="store_true", help="leave PyTorch eager out")
    args = parser.parse_args()

    cfg = load_run_config(args.run_dir)
    if str(cfg.task.name) == "semantic_parse":
        parser_main(args, cfg)
        return
    texts = split_texts(args.run_dir, cfg)
    requests = (texts * (args.requests // len(texts) + 1))[: args.requests]
    export_dir = args.run_dir / "export"
    if not (export_dir / "model.int8.onnx").is_file():
        from nlpkit.export import export_run

        export_run(args.run_dir, quantize=True)
    from nlpkit.serving.onnx_predictor import OnnxPredictor

    files = {"onnx_fp32": export_dir / "model.onnx", "onnx_int8": export_dir / "model.int8.onnx"}
    for entry in args.baseline:
        label, _, path = entry.partition("=")
        files[label] = Path(path)
    eager = None if args.no_eager else nlpkit.load(args.run_dir)

    def backends(threads: int) -> dict[str, Predict]:
        """Eager on ``threads`` torch threads; each file as ``OnnxPredictor`` runs it: one text on one
        thread, several on a non-spinning session of ``threads`` threads."""
        torch.set_num_threads(threads)
        out: dict[str, Predict] = {} if eager is None else {"pytorch_eager": eager.predict}
        out.update(
            {
                name: OnnxPredictor(path, threads=1, batch_threads=threads).predict
                for name, path in files.items()
            }
        )
        return out

    single = backends(1)
    for predict in single.values():  # warm-up
        for text in requests[:50]:
            predict([text])
    repeats = [
        {name: percentiles(samples) for name, samples in interleaved_single(single, requests).items()}
        for _ in range(args.repeats)
    ]
    batch = backends(args.batch_threads)
    interleaved_batches(batch, texts[: args.batch_size * 4], args.batch_size)  # warm-up
    throughputs = [interleaved_batches(batch, texts, args.batch_size) for _ in range(args.repeats)]

    flops = flops_per_sentence(eager if eager is not None else nlpkit.load(args.run_dir), texts[:512])
    rate_1, rate_2 = gemm_rate(1), gemm_rate(2)
    floor_ms = None if flops is None else flops / rate_1 * 1000.0
    floor_per_s = None if flops is None else rate_2 / flops

    results: dict[str, dict] = {}
    for name in single:
        results[name] = {
            **{q: statistics.median(r[name][q] for r in repeats) for q in ("p50", "p90", "p99")},
            "p50_min": min(r[name]["p50"] for r in repeats),
            "p50_ratio_to_fp32": summarize([r[name]["p50"] / r[REFERENCE]["p50"] for r in repeats]),
            "batch_sentences_per_s": summarize([t[name] for t in throughputs]),
            "batch_ratio_to_fp32": summarize([t[name] / t[REFERENCE] for t in throughputs]),
        }

    print(
        f"run: {args.run_dir}  ({cfg.task.name}, model {cfg.model.name}; {len(requests)} requests x "
        f"{args.repeats} repeats, interleaved; batch {args.batch_size} on {args.batch_threads} threads over "
        f"{len(texts)} texts)"
    )
    if flops is not None:
        print(
            f"floor: {flops / 1e6:.2f} MFLOP/sentence; GEMM {rate_1 / 1e9:.0f} GFLOP/s (1 thread), "
            f"{rate_2 / 1e9:.0f} GFLOP/s (2 threads) -> {floor_ms:.3f} ms/sentence, {floor_per_s:,.0f} sentences/s"
        )
    header = f"{'backend':15} {'P50 ms':>8} {'P90 ms':>8} {'P99 ms':>8} {'P50/fp32 min-med':>17} {'batch sent/s':>13} {'batch/fp32':>11}"
    print(header)
    for name, r in results.items():
        ratio = r["p50_ratio_to_fp32"]
        print(
            f"{name:15} {r['p50']:8.3f} {r['p90']:8.3f} {r['p99']:8.3f} "
            f"{ratio['min']:8.2f}-{ratio['median']:<8.2f} {r['batch_sentences_per_s']['median']:13,.0f} "
            f"{r['batch_ratio_to_fp32']['median']:11.2f}"
        )
    if floor_ms is not None:
        fp32 = results[REFERENCE]
        print(
            f"onnx_fp32 vs floor: P50 {fp32['p50'] / floor_ms:.1f}x the floor; batch "
            f"{fp32['batch_sentences_per_s']['median'] / floor_per_s:.0%} of the floor's rate"
        )
    summary = {
        "run_dir": str(args.run_dir),
        "task": str(cfg.task.name),
        "model": str(cfg.model.name),
        "requests": len(requests),
        "repeats": args.repeats,
        "flops_per_sentence": flops,
        "gemm_flops_per_s": {"1": rate_1, "2": rate_2},
        "floor_ms": floor_ms,
        "floor_sentences_per_s": floor_per_s,
        "backends": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
