"""One-file ONNX export of a trained run: tokenizer, network and decoding in one graph.

``python -m nlpkit.export run_dir=DIR [quantize=true] [exporter=torchscript|dynamo]`` or
``nlpkit.export.export_run(DIR)`` writes ``DIR/export/model.onnx`` (and ``model.int8.onnx`` with
``quantize``) only after a parity gate against the PyTorch predictor and the HF tokenizer passed,
and ``DIR/export/export_report.json`` either way. Each task registers its exporter in ``EXPORTERS``.

A ``task=multitask`` run is exported one sub-task at a time (``task=NAME``, ``export_run(DIR,
task=NAME)``): that sub-task's model as a standalone file of its kind, in ``DIR/export/NAME/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nlpkit.export.text_graph import ExportError
from nlpkit.training.run_dir import remove_temporaries, run_lock
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


#: task name -> ``export(run_dir, cfg, out_dir, quantize, exporter) -> (report, {filename: bytes})``;
#: the exporters of the kinds a multi-task sub-task can be also take ``subtask=NAME``
EXPORTERS: dict[str, Callable[..., tuple[dict[str, Any], dict[str, bytes]]]] = {
    "doc_cls": _doc_cls,
    "tagging": _word_level,
    "intent_slot": _word_level,
    "intent": _word_level,
}
MULTITASK = "multitask"


def resolve_task(cfg, run_dir: Path, task: str | None) -> tuple[str, str | None]:
    """``(kind to export, sub-task name or None)`` for a run and the ``task=`` it was asked with."""
    name = str(cfg.task.name)
    if name != MULTITASK:
        if task is not None:
            raise ExportError(
                f"task={task!r} picks a sub-task of a multi-task run, but {run_dir} is a task={name} run: "
                "export it without task="
            )
        return name, None
    subtasks = list(cfg.task.tasks)
    if task is None or task not in subtasks:
        problem = "is a multi-task run" if task is None else f"has no sub-task {task!r}"
        raise ExportError(
            f"{run_dir} {problem}: export one sub-task at a time with task=NAME "
            f"(its sub-tasks: {', '.join(subtasks)})"
        )
    return str(cfg.task.tasks[task].task), task


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
    kind, subtask = resolve_task(cfg, run_dir, task)
    if kind not in EXPORTERS:
        raise ExportError(
            f"ONNX export is not available for task {kind!r} yet (supported: {', '.join(sorted(EXPORTERS))})"
        )
    default = run_dir / EXPORT_DIR if subtask is None else run_dir / EXPORT_DIR / subtask
    out_dir = Path(out_dir) if out_dir is not None else default
    # a sub-task is word-level (multitask.SUBTASKS): only the word-level exporter is given one
    extra = {} if subtask is None else {"subtask": subtask}
    with run_lock(run_dir, "export"):
        report, files = EXPORTERS[kind](run_dir, cfg, out_dir, quantize, exporter, **extra)
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


__all__ = ["EXPORTERS", "ExportError", "export_run"]
