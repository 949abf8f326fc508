"""``key=value`` argument parsing for the small CLIs (evaluate, predict, export).

They act on an existing run directory, so they take a few known keys plus ``data.*`` overrides
of the run's own data config, instead of composing the training config tree again.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nlpkit.errors import ConfigError, NlpkitError

HELP_FLAGS = ("-h", "--help")


def usage_text(doc: str, defaults: dict[str, Any], allow_prefixes: Sequence[str] = ()) -> str:
    """``doc`` (a CLI module's docstring) followed by every key with its default (``???``: required)."""
    lines = [doc.strip(), "", "keys (key=value):"]
    for key, value in defaults.items():
        if isinstance(value, dict):
            continue  # a prefix of overrides, listed below
        shown = "required" if value == "???" else f"default: {'null' if value is None else value}"
        lines.append(f"  {key}=...  ({shown})")
    lines += [f"  {prefix}.KEY=VALUE  (overrides the run's own {prefix} config)" for prefix in allow_prefixes]
    return "\n".join(lines)


def parse_args(
    argv: Sequence[str], defaults: dict[str, Any], allow_prefixes: Sequence[str] = (), doc: str = ""
) -> DictConfig:
    """Parse ``key=value`` pairs; unknown keys fail naming the valid ones. ``???`` marks required keys.

    ``-h``/``--help`` prints ``doc`` and the keys (``usage_text``) and exits 0.
    """
    if any(arg in HELP_FLAGS for arg in argv):
        print(usage_text(doc, defaults, allow_prefixes))
        raise SystemExit(0)
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"expected key=value, got {arg!r}; valid keys: {', '.join(defaults)}")
    args = OmegaConf.from_dotlist(list(argv))
    for key in args:
        if key not in defaults and not any(key == p for p in allow_prefixes):
            shown = list(defaults) + [f"{p}.*" for p in allow_prefixes]
            raise ConfigError(f"unknown argument {key!r}; valid keys: {', '.join(shown)}")
    merged = OmegaConf.merge(OmegaConf.create(defaults), args)
    missing = [k for k in defaults if OmegaConf.is_missing(merged, k)]
    if missing:
        raise ConfigError(f"missing required argument(s): {', '.join(f'{k}=...' for k in missing)}")
    return merged


def run_cli(main: Callable[[Sequence[str]], Any], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)``; an ``NlpkitError`` is printed as one line and exits 1, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        main(sys.argv[1:] if argv is None else argv)
    except NlpkitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
