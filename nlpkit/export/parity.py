"""What every exporter's parity gate shares: the edge-case texts, tolerances and report trimming."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SCORE_TOLERANCE = 1e-4
MIXED_BATCH = 64
#: The int8 file's gate, against the fp32 file on the parity split (the test split when there is one),
#: at batch ``MIXED_BATCH``: for every head check, at most ``INT8_MAX_CHANGED`` of the texts may differ
#: (a label, a tag sequence, or a score/value further than ``INT8_SCORE_TOLERANCE`` from fp32's).
#: Failing it, ``model.int8.onnx`` is not written; the fp32 file is, and the report says why.
INT8_SCORE_TOLERANCE = 0.05
INT8_MAX_CHANGED = 0.01
MAX_REPORTED = 5

EDGE_CASES = [
    "",
    " ",
    " \t\n  \r\n ",
    "!!!",
    "?!.,;:'\"()[]{}",
    "...---...",
    "Ünïcode İstanbul ÉCOLE straße",
    "İİ iİi DİYARBAKIR",
    "中文分词测试，日本語のテキスト。한국어 문장",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷!",
    "tabs\tand\nnewlines\r\nand\u000bvertical\u000cfeed",
    "digits 12345 3.14 1,000,000 ٣٤٥ ½ ²",
    "no\u00a0break\u3000ideographic\u2009thin space",
    "decomposed e\u0301 vs precomposed é",
    "ΣΊΣΥΦΟΣ final sigma ς Σ",
    "<pad> <unk> a<pad>b <PAD>",
    "Unicode 16: \u1c89 \ua7cb \U00010d50",
    "x" * 300,
    "wake me up at 7 am",
]


def first_few(items: list[dict]) -> list[dict]:
    """The first mismatches, for the report (all of them are counted)."""
    return items[:MAX_REPORTED]


def check_result(mismatches: list[dict], examples, batch_sizes) -> dict:
    """One parity check's report entry: passed, what it ran on, and the first mismatches."""
    return {
        "passed": not mismatches,
        "examples": examples,
        "batch_sizes": list(batch_sizes),
        "mismatches": len(mismatches),
        "first_mismatches": first_few(mismatches),
    }


def provenance_metadata(run_dir, checkpoint, tokenizer_path) -> dict[str, str]:
    """The metadata every exported file carries: versions and the hashes of what it was built from."""
    import onnxruntime

    import nlpkit
    from nlpkit.utils.io import sha256_file

    return {
        "nlpkit_version": nlpkit.__version__,
        "tokenizer_sha256": sha256_file(tokenizer_path),
        "tokenizer_file": str(tokenizer_path.relative_to(run_dir)),  # what the serving side re-hashes
        "weights_sha256": sha256_file(checkpoint),
        "weights_file": str(checkpoint.relative_to(run_dir)),
        "requires_onnxruntime_extensions": "false",
        "verified_with_onnxruntime": onnxruntime.__version__,
    }


def gate_report(
    *,
    task: str,
    run_dir,
    split: str,
    examples: int,
    edge_cases: int,
    checks: dict[str, dict],
    metadata: dict[str, str],
    exporter: str,
    model,
    export_seconds: float,
) -> dict[str, Any]:
    """The ``export_report.json`` skeleton; ``passed`` only when every check passed."""
    return {
        "task": task,
        "run_dir": str(run_dir),
        "passed": all(check["passed"] for check in checks.values()),
        "parity_data": {"split": split, "examples": examples, "edge_cases": edge_cases},
        "checks": checks,
        "metadata": metadata,
        "exporter": exporter,
        "opset": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
        "timings": {"export_seconds": round(export_seconds, 3)},
    }


def accept_model(
    report: dict[str, Any],
    split: str,
    model,
    session,
    metrics_of: Callable[[Any], dict[str, float]],
    quantized: Callable[[], Any] | None = None,
    agreement: Callable[[Any, Any], float | None] | None = None,
    int8_checks: Callable[[Any, Any], dict[str, dict]] | None = None,
) -> dict[str, bytes]:
    """The files to write once the gate passed (none otherwise): ``model.onnx``, with its metrics on
    ``split`` (``metrics_of(session)``) recorded in the report; with ``quantized`` (builds the int8
    model), also its metrics beside fp32's (plus ``agreement(fp32, int8)``), and ``model.int8.onnx``
    only if every ``int8_checks(fp32, int8)`` entry passed (the int8 gate, ``INT8_MAX_CHANGED``)."""
    if not report["passed"]:
        return {}
    from nlpkit.export.graph import quantized_ops
    from nlpkit.export.graph import session as make_session

    fp32 = metrics_of(session)
    files = {"model.onnx": model.SerializeToString()}
    report["model"] = {"file": "model.onnx", "bytes": len(files["model.onnx"])}
    report["metrics"] = {f"{split}_onnx": fp32}
    if quantized is not None:
        int8_model = quantized()
        int8_session = make_session(int8_model)
        payload = int8_model.SerializeToString()
        extra: dict[str, Any] = {"quantized_ops": quantized_ops(int8_model)}
        if agreement is not None:
            extra["label_agreement_with_fp32"] = agreement(session, int8_session)
        checks = {} if int8_checks is None else int8_checks(session, int8_session)
        passed = all(check["passed"] for check in checks.values())
        extra["gate"] = {
            "passed": passed,
            "rule": f"against fp32 on the {split} split: at most {INT8_MAX_CHANGED:.0%} of the texts with "
            f"another label / tag sequence, or a score further than {INT8_SCORE_TOLERANCE}, per check",
            "checks": checks,
        }
        report["quantized"] = quantized_entry(payload, split, metrics_of(int8_session), fp32, **extra)
        if passed:
            files["model.int8.onnx"] = payload
        else:
            report["quantized"]["file"] = None
    return files


def int8_check_result(check, examples: int) -> dict[str, Any]:
    """A head check run int8-against-fp32, judged by the int8 rule: passed while at most
    ``INT8_MAX_CHANGED`` of the ``examples`` texts differ."""
    out = check.result()
    out["changed_share"] = out["mismatches"] / examples if examples else 0.0
    out["passed"] = out["changed_share"] <= INT8_MAX_CHANGED
    return out


def quantized_entry(
    payload: bytes, split: str, int8: dict[str, float], fp32: dict[str, float], **extra
) -> dict[str, Any]:
    """The report's ``quantized`` section: the int8 file's metrics beside fp32's, and their deltas."""
    return {
        "file": "model.int8.onnx",
        "bytes": len(payload),
        f"{split}_metrics": int8,
        f"{split}_metrics_fp32": fp32,
        "delta": {k: int8[k] - fp32[k] for k in fp32},
        **extra,
    }
