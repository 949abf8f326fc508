"""One-file ONNX export of a trained run: tokenizer, network and decoding in one graph.

``python -m nlpkit.export run_dir=DIR [quantize=true] [exporter=torchscript|dynamo]`` or
``nlpkit.export.export_run(DIR)`` writes ``DIR/export/model.onnx`` (and ``model.int8.onnx`` with
``quantize``) only after a parity gate against the PyTorch predictor and the HF tokenizer passed,
and ``DIR/export/export_report.json`` either way. Each task exports through its own
``Task.export_onnx`` hook (the exporter beside it in its task folder).

A ``task=multitask`` run is exported one sub-task at a time (``task=NAME``, ``export_run(DIR,
task=NAME)``): that sub-task's model as a standalone file of its kind, in ``DIR/export/NAME/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nlpkit.errors import ExportError
from nlpkit.registry import get_task
from nlpkit.training.run_dir import remove_temporaries, run_lock
from nlpkit.utils.io import write_bytes, write_json

log = logging.getLogger("nlpkit.export")

EXPORT_DIR = "export"
REPORT_FILE = "export_report.json"


def _remove_stale(out_dir: Path, keep: set[str]) -> list[Path]:
    """Delete what an earlier export left that this one did not write: a ``model.int8.onnx`` beside a
    new fp32-only ``model.onnx``, a model whose re-export failed its gate, temporary files of a killed
    write. The export folder then holds exactly the latest export's files."""
    stale = [p for p in out_dir.glob("*.onnx") if p.name not in keep] if out_dir.is_dir() else []
    for path in stale:
        path.unlink()
        log.info("removed %s: not part of this export", path)
    return stale + remove_temporaries(out_dir)


def export_run(
    run_dir: str | Path,
    quantize: bool = False,
    exporter: str = "torchscript",
    out_dir: str | Path | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Export ``run_dir``; returns the report. Raises :class:`ExportError` when the config is refused
    or the parity gate fails (the report is still written; no model file is).

    ``task``: for a ``task=multitask`` run (and only there), the sub-task to export; its files go to
    ``run_dir/export/<task>/`` unless ``out_dir`` is given."""
    from nlpkit.api import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    task_cls = get_task(str(cfg.task.name))
    default = run_dir / EXPORT_DIR if task is None else run_dir / EXPORT_DIR / task
    out_dir = Path(out_dir) if out_dir is not None else default
    with run_lock(run_dir, "export"):
        report, files = task_cls.export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask=task)
        written = files if report["passed"] else {}
        for name, payload in written.items():
            write_bytes(out_dir / name, payload)  # temp file + rename: never a half-written model
        report["files_written"] = sorted(written)
        report["files_removed"] = [path.name for path in _remove_stale(out_dir, keep=set(written))]
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


__all__ = ["ExportError", "export_run"]
