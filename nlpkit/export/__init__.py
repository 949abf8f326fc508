"""One-file ONNX export of a trained run: tokenizer, network and decoding in one graph.

``python -m nlpkit.export run_dir=DIR [quantize=true] [exporter=torchscript|dynamo]`` or
``nlpkit.export.export_run(DIR)`` writes ``DIR/export/model.onnx`` (and ``model.int8.onnx`` with
``quantize``) only after a parity gate against the PyTorch predictor and the HF tokenizer passed,
and ``DIR/export/export_report.json`` either way. Each task registers its exporter in ``EXPORTERS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nlpkit.export.text_graph import ExportError
from nlpkit.utils.io import write_bytes, write_json

log = logging.getLogger("nlpkit.export")

EXPORT_DIR = "export"
REPORT_FILE = "export_report.json"


def _doc_cls(*args, **kwargs):
    from nlpkit.export.doc_cls import export

    return export(*args, **kwargs)


def _word_level(*args, **kwargs):
    from nlpkit.export.tagging import export

    return export(*args, **kwargs)


#: task name -> ``export(run_dir, cfg, out_dir, quantize, exporter) -> (report, {filename: bytes})``
EXPORTERS: dict[str, Callable[..., tuple[dict[str, Any], dict[str, bytes]]]] = {
    "doc_cls": _doc_cls,
    "tagging": _word_level,
    "intent_slot": _word_level,
}


def export_run(
    run_dir: str | Path,
    quantize: bool = False,
    exporter: str = "torchscript",
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Export ``run_dir``; returns the report. Raises :class:`ExportError` when the config is refused
    or the parity gate fails (the report is still written; no model file is)."""
    from nlpkit.api import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    task = str(cfg.task.name)
    if task not in EXPORTERS:
        raise ExportError(
            f"ONNX export is not available for task {task!r} yet (supported: {', '.join(sorted(EXPORTERS))})"
        )
    out_dir = Path(out_dir) if out_dir is not None else run_dir / EXPORT_DIR
    report, files = EXPORTERS[task](run_dir, cfg, out_dir, quantize, exporter)
    if report["passed"]:
        for name, payload in files.items():
            write_bytes(out_dir / name, payload)  # temp file + rename: never a half-written model
    report["files_written"] = sorted(files) if report["passed"] else []
    write_json(out_dir / REPORT_FILE, report)
    if not report["passed"]:
        failed = [name for name, check in report["checks"].items() if not check["passed"]]
        examples = [
            example
            for name in failed
            for example in report["checks"][name].get("first_mismatches", [report["checks"][name]])[:2]
        ]
        raise ExportError(
            f"parity gate failed ({', '.join(failed)}); no model.onnx written. First differences: {examples}. "
            f"Full report: {out_dir / REPORT_FILE}"
        )
    return report


__all__ = ["EXPORTERS", "ExportError", "export_run"]
