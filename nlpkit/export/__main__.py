"""``python -m nlpkit.export run_dir=DIR [task=NAME] [quantize=true] [exporter=torchscript|dynamo] [out_dir=DIR] [imports=[PKG]]``.

``task=NAME`` (multi-task runs only) exports that sub-task to ``DIR/export/NAME/``."""

from __future__ import annotations

import json
import logging
import sys

from omegaconf import OmegaConf

from nlpkit.errors import NlpkitError

USAGE = (
    "usage: python -m nlpkit.export run_dir=DIR [task=SUBTASK] [quantize=true] "
    "[exporter=torchscript|dynamo] [out_dir=DIR] [imports=[PKG,...]]\n"
    "  task=SUBTASK: for a task=multitask run, the sub-task to export (to DIR/export/SUBTASK/)\n"
    "  imports=[PKG,...]: the modules of your own a run was trained with (imports=[...] at training)"
)
KEYS = {"run_dir", "task", "quantize", "exporter", "out_dir", "imports"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    if any(arg in ("-h", "--help") for arg in argv):
        print(USAGE)
        return 0
    if any("=" not in arg for arg in argv):
        print(USAGE, file=sys.stderr)
        return 2
    args = OmegaConf.from_dotlist(argv)
    unknown = set(args) - KEYS
    if unknown or not args.get("run_dir"):
        print(f"unknown option(s) {sorted(unknown)}\n{USAGE}" if unknown else USAGE, file=sys.stderr)
        return 2
    from nlpkit.export import export_run
    from nlpkit.registry import import_modules

    try:
        import_modules(args.get("imports"))
        report = export_run(
            str(args.run_dir),
            quantize=bool(args.get("quantize", False)),
            exporter=str(args.get("exporter", "torchscript")),
            out_dir=args.get("out_dir"),
            task=None if args.get("task") is None else str(args.task),
        )
    except NlpkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary = {
        **({"subtask": report["subtask"]} if "subtask" in report else {}),
        "files": report["files_written"],
        "checks": {name: check["passed"] for name, check in report["checks"].items()},
        "max_abs_score_diff": next(
            (c["max_abs_diff"] for c in report["checks"].values() if "max_abs_diff" in c), None
        ),
        "metrics": report.get("metrics"),
        "quantized": report.get("quantized"),
        "timings": report["timings"],
        # a pair/ranking run's embedding files (one per tower): their own metrics and int8 outcome
        **{
            stem: {key: report[stem].get(key) for key in ("model", "metrics", "quantized")}
            for stem in ("embedding", "embedding_a")
            if isinstance(report.get(stem), dict)
        },
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
