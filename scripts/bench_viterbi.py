"""Time the exported CRF Viterbi graph alone, this checkout's against another revision's, interleaved.

    python scripts/bench_viterbi.py --baseline-rev ed2243d [--tags 120 --steps 11]

Both graphs decode the same random emissions (one thread each); every answer is checked against a
NumPy Viterbi first. Prints P50 per batch size and the ratio to the baseline: read the ratio, the
milliseconds move with machine load.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nlpkit.export import decoding  # noqa: E402
from nlpkit.export.text_graph import GraphBuilder, opset_imports  # noqa: E402


def decoding_at(rev: str):
    """``nlpkit/export/decoding.py`` as it was at ``rev`` (git), imported as its own module."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:nlpkit/export/decoding.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"decoding_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def session(build, potentials, num_tags: int) -> ort.InferenceSession:
    b = GraphBuilder("")
    out = build(b, "emissions", "mask", *potentials)
    graph = helper.make_graph(
        b.nodes,
        "viterbi",
        [
            helper.make_tensor_value_info("emissions", TensorProto.FLOAT, ["B", "T", num_tags]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["B", "T"]),
        ],
        [helper.make_tensor_value_info(out, TensorProto.INT64, ["B", "T"])],
        initializer=b.initializers,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    model = helper.make_model(graph, opset_imports=opset_imports())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def numpy_viterbi(emissions, mask, start, transitions, end) -> np.ndarray:
    """Reference tags ``[B, T]`` (0 at padding), first index on ties."""
    rows = []
    for e, m in zip(emissions, mask):
        n, score, pointers = int(m.sum()), start + e[0], []
        for t in range(1, n):
            candidates = score[:, None] + transitions  # [from, to]
            pointers.append(candidates.argmax(0))
            score = candidates.max(0) + e[t]
        tag = int((score + end).argmax())
        path = [tag]
        for back in reversed(pointers):
            tag = int(back[tag])
            path.append(tag)
        rows.append(path[::-1] + [0] * (len(m) - n))
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--baseline-rev", required=True, help="git revision whose Viterbi graph is the baseline"
    )
    parser.add_argument("--tags", type=int, default=120, help="number of tags (ATIS slot-gated: 120)")
    parser.add_argument("--steps", type=int, default=11, help="tokens per sentence")
    parser.add_argument("--repeats", type=int, default=300, help="timed runs at batch 1 (batch 64: a fifth)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    potentials = (
        rng.normal(size=args.tags),
        rng.normal(size=(args.tags, args.tags)),
        rng.normal(size=args.tags),
    )
    sessions = {
        "this checkout": session(decoding.build_viterbi_tags, potentials, args.tags),
        args.baseline_rev: session(decoding_at(args.baseline_rev).build_viterbi_tags, potentials, args.tags),
    }
    for batch in (1, 64):
        emissions = (rng.normal(size=(batch, args.steps, args.tags)) * 3).astype(np.float32)
        lengths = rng.integers(3, args.steps + 1, size=batch)
        lengths[0] = args.steps
        mask = np.arange(args.steps)[None, :] < lengths[:, None]
        feed = {"emissions": emissions, "mask": mask}
        want = numpy_viterbi(emissions, mask, *potentials)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for name, s in sessions.items():
            if not (s.run(None, feed)[0] == want).all():
                raise SystemExit(f"{name}: tags differ from the NumPy Viterbi at batch {batch}")
        for _ in range(args.repeats if batch == 1 else max(1, args.repeats // 5)):
            for name, s in sessions.items():  # interleaved: load moves both alike
                start = time.perf_counter()
                s.run(None, feed)
                times[name].append(time.perf_counter() - start)
        base = float(np.median(times[args.baseline_rev]))
        for name, values in times.items():
            p50 = float(np.median(values))
            print(
                f"batch {batch:3d}  {name:14s}  P50 {p50 * 1e3:8.3f} ms  ratio to {args.baseline_rev}: {p50 / base:.2f}"
            )


if __name__ == "__main__":
    main()
