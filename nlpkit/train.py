"""Training entry point: ``python -m nlpkit.train task=doc_cls model=bilstm`` (``nlpkit.train(cfg)`` in
notebooks is :func:`nlpkit.training.fit.train`).

``main`` is the thin Hydra wrapper that also keeps one failing job from aborting a multirun sweep.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from nlpkit.config import CONF_DIR
from nlpkit.errors import NlpkitError
from nlpkit.training.fit import train
from nlpkit.utils.io import write_text

log = logging.getLogger("nlpkit.train")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point. Returns the optimized metric so sweepers (Optuna) can use it."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return float(train(cfg)["optimized_metric"])
    except NlpkitError as err:
        if multirun:
            log.error("%s", err)
            write_text(Path(HydraConfig.get().runtime.output_dir) / "error.txt", f"{err}\n")
            return math.nan
        print(f"error: {err}", file=sys.stderr)  # the one line every nlpkit CLI prints
        # End now: the collector's pass over the run's ~10^6 objects at exit takes seconds, and a
        # stopped (SIGTERM'd) DDP job must be gone in a few.
        gc.freeze()
        sys.exit(1)
    except Exception as err:
        if not multirun:
            raise
        # One failed job must not abort the sweep: record it and report NaN to the sweeper.
        log.exception("job failed: %s", err)
        write_text(Path(HydraConfig.get().runtime.output_dir) / "error.txt", f"{type(err).__name__}: {err}\n")
        return math.nan


def check_overrides(argv: Sequence[str]) -> None:
    """Compose the command line once before Hydra does, so that an unknown key (``data.trian_path=x``)
    or choice (``model=bilstmm``) is nlpkit's one-line error with "did you mean", not Hydra's block.

    A sweep (``-m model=bilstm,cnn``) is checked with its first value. Command lines with Hydra's own
    flags (``--help``, ``--cfg job``, ``-cn``) and errors nlpkit does not explain are left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from nlpkit.api import compose

    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in argv):
        return
    try:
        parsed = OverridesParser.create().parse_overrides([arg for arg in argv if not arg.startswith("-")])
        lines = [
            f"{o.get_key_element()}={next(o.sweep_string_iterator())}"
            if o.is_sweep_override()
            else o.input_line
            for o in parsed
        ]
    except Exception:  # noqa: BLE001 - a malformed override: Hydra reports it as it parses
        return
    try:
        compose(lines, output_dir=".")
    except (HydraException, OmegaConfBaseException):
        return


def cli() -> None:
    """``python -m nlpkit.train``: the override check, then Hydra's entry point."""
    try:
        check_overrides(sys.argv[1:])
    except NlpkitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    main()


if __name__ == "__main__":
    cli()
