"""Training-loop overhead: nlpkit's Lightning path vs a hand-written PyTorch loop.

Every variant trains the same ``DocClassifier`` (built with ``build_doc_classifier`` from the same
composed config, after the same ``seed_everything``) on the same batches (the data module's own
``train_dataloader``: bucketing sampler + padding collator), with the same optimizer
(``build_optimizer`` from ``cfg.optim``) and the same gradient clipping, for the same number of epochs
and so the same number of optimizer steps. Torch threads are fixed (``--threads``).

Variants:

* ``plain``: zero_grad / forward / loss / backward / clip_grad_norm_ / step. No metrics, no validation.
* ``lightning_loss_only``: as ``lightning_bare`` but the module's training step only computes the loss
  (no metric update, no ``self.log``): Lightning's own loop cost. Diagnostic only.
* ``lightning_bare``: ``pl.Trainer.fit`` on nlpkit's ``DocClassificationModule`` + data module, with
  validation, checkpointing, loggers, progress bar and model summary OFF. The module's own per-step
  work stays on (torchmetrics update + ``self.log`` of train loss/accuracy/macro-F1), because that is
  what nlpkit's training step does.
* ``nlpkit_default``: as ``nlpkit.train`` configures the Trainer: the configured callbacks
  (ModelCheckpoint best+last, EarlyStopping, LearningRateMonitor; the progress bar is off) and loggers
  (TensorBoard + CSV), ``AtomicCheckpointIO``, validation every epoch. EarlyStopping's patience is raised
  so that every variant runs all epochs. Because it validates, it is also compared with
  ``plain+val``: ``plain``'s epoch plus one plain ``no_grad`` pass over the same validation batches
  (timed on the plain model after its training).

Per-epoch time is the time between consecutive epoch starts (so it includes whatever happens at
epoch end: metric compute, logging, validation, checkpoint writes), measured both as wall-clock time
and as this process's CPU time. On a shared machine the CPU time is the steadier figure: other
processes' load inflates wall time but hardly this process's CPU time. The first ``--warmup`` epochs of
each variant are discarded; the median of the rest is reported. Variants run in interleaved rounds
(``--rounds``) so that drift in machine load affects them alike.

The default run (``make bench``) is sized to finish in about 3 minutes on a 2-core machine: built-in
dataset cut to its first 2000 training examples (63 steps/epoch), model=bilstm, 1 warm-up + 2 measured
epochs, 2 rounds, 1 torch thread. Epoch-to-epoch spread on a shared machine is several percent, so
a single default run resolves the overhead to roughly +-5 points; use more ``--epochs``/``--rounds``
(and ``--max-train-examples 0``) for a tighter figure.

    python scripts/bench_train_overhead.py                                  # default, see above
    python scripts/bench_train_overhead.py --max-train-examples 0 --model cnn  # whole built-in train split
    python scripts/bench_train_overhead.py --data sst2 --epochs 2 --warmup 1 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nlpkit  # noqa: E402
from nlpkit.config import validate  # noqa: E402
from nlpkit.tasks.doc_cls.data import DocClassificationDataModule  # noqa: E402
from nlpkit.tasks.doc_cls.model import build_doc_classifier  # noqa: E402
from nlpkit.tasks.doc_cls.module import DocClassificationModule  # noqa: E402
from nlpkit.training.checkpoint import AtomicCheckpointIO  # noqa: E402
from nlpkit.training.fit import _callbacks, _loggers  # noqa: E402
from nlpkit.training.optim import build_optimizer  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("builtin", "sst2"), default="builtin")
    p.add_argument("--model", choices=("bilstm", "cnn"), default="bilstm")
    p.add_argument("--epochs", type=int, default=2, help="measured epochs per variant and round")
    p.add_argument("--warmup", type=int, default=1, help="discarded epochs at the start of each run")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of all variants")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 avoids OpenMP thrash on a shared box)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="override data.batch_size")
    p.add_argument(
        "--max-train-examples",
        type=int,
        default=2000,
        help="keep only the first N training examples (0 = all)",
    )
    p.add_argument("--skip-default", action="store_true", help="only plain vs lightning_bare")
    p.add_argument("--json-out", type=Path, default=None, help="also write the JSON result here")
    return p.parse_args(argv)


def compose_cfg(args: argparse.Namespace, out_dir: Path):
    overrides = [f"model={args.model}", f"seed={args.seed}", "trainer.enable_progress_bar=false"]
    if args.data == "sst2":
        overrides.append("experiment=sst2")
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    cfg = nlpkit.compose(overrides, output_dir=str(out_dir))
    with open_dict(cfg):
        # Every variant must run every epoch: EarlyStopping stays (its cost is measured) but never fires.
        if cfg.get("callbacks") and cfg.callbacks.get("early_stopping"):
            cfg.callbacks.early_stopping.patience = 10**6
    return validate(cfg)


def load_data(cfg, max_train: int | None) -> DocClassificationDataModule:
    dm = DocClassificationDataModule(cfg.data)
    dm.load()
    if max_train:
        train = dm.splits["train"]
        train.token_ids = train.token_ids[:max_train]
        train.targets = train.targets[:max_train]
        train.examples = train.examples[:max_train]
    return dm


def build_model(cfg, dm: DocClassificationDataModule):
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    return build_doc_classifier(
        cfg.model,
        vocab_size=dm.featurizer.vocab_size,
        pad_id=dm.featurizer.pad_id,
        num_labels=len(dm.labels),
        vocab=dm.featurizer.vocab,
    )


def now() -> tuple[float, float]:
    """(wall clock, this process's CPU time)."""
    return time.perf_counter(), time.process_time()


def epoch_times(starts: list[tuple[float, float]], end: tuple[float, float]) -> dict[str, list[float]]:
    marks = [*starts, end]
    return {
        "epoch_s": [b[0] - a[0] for a, b in zip(marks, marks[1:])],
        "epoch_cpu_s": [b[1] - a[1] for a, b in zip(marks, marks[1:])],
    }


# ------------------------------------------------------------------------------ plain PyTorch
def run_plain(cfg, dm, n_epochs: int, val_passes: int) -> dict:
    """Hand-written training loop; afterwards ``val_passes`` timed no_grad passes over the val batches."""
    model = build_model(cfg, dm)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    clip = cfg.trainer.get("gradient_clip_val")
    train_loader = dm.train_dataloader()
    steps = 0
    starts: list[tuple[float, float]] = []
    for _ in range(n_epochs):
        starts.append(now())
        model.train()
        for batch in train_loader:
            optimizer.zero_grad(set_to_none=True)
            logits = model(batch)["logits"]
            loss = model.output.loss(logits, batch["labels"])
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            optimizer.step()
            steps += 1
    ended = now()
    val_seconds: list[float] = []
    val_cpu_seconds: list[float] = []
    val_loader = dm.val_dataloader()
    model.eval()
    for _ in range(val_passes):
        started = now()
        correct = 0
        with torch.no_grad():
            for batch in val_loader:
                predictions = model.output.predict(model(batch)["logits"])
                correct += int((predictions == batch["labels"]).sum())
        finished = now()
        val_seconds.append(finished[0] - started[0])
        val_cpu_seconds.append(finished[1] - started[1])
    return {**epoch_times(starts, ended), "steps": steps, "val_s": val_seconds, "val_cpu_s": val_cpu_seconds}


# ------------------------------------------------------------------------------ Lightning
class LossOnlyModule(DocClassificationModule):
    """nlpkit's module with a training step that only computes the loss: no torchmetrics, no ``self.log``.

    Not an nlpkit configuration; it splits ``lightning_bare``'s overhead into Lightning's loop itself
    and nlpkit's per-step metric updates + logging.
    """

    def training_step(self, batch, batch_idx):
        return self.losses(self(batch), batch)["loss"]


class EpochClock(pl.Callback):
    def __init__(self):
        self.starts: list[tuple[float, float]] = []
        self.end: tuple[float, float] | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.append(now())

    def on_train_end(self, trainer, pl_module):
        self.end = now()


def run_lightning(
    cfg, dm, n_epochs: int, default: bool, run_dir: Path, module_cls: type = DocClassificationModule
) -> dict:
    model = build_model(cfg, dm)
    module = module_cls(model, dm.labels.names, cfg.optim, cfg.task.monitor, cfg.task.monitor_mode)
    clock = EpochClock()
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs.update(max_epochs=n_epochs, min_epochs=n_epochs)
    if default:
        # As nlpkit.train builds it (progress bar off, as in a batch job).
        run_dir.mkdir(parents=True, exist_ok=True)
        callbacks = [*_callbacks(cfg, run_dir), clock]
        extra = dict(
            logger=_loggers(cfg, run_dir) or False,
            default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO()],
            enable_model_summary=False,
        )
    else:
        callbacks = [clock]
        extra = dict(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=str(run_dir),
        )
    trainer_kwargs.update(extra)
    trainer = pl.Trainer(**trainer_kwargs, callbacks=callbacks)
    trainer.fit(module, datamodule=dm)
    return {**epoch_times(clock.starts, clock.end), "steps": int(trainer.global_step)}


# ------------------------------------------------------------------------------ main
def pct(value: float, base: float) -> float:
    return 100.0 * (value - base) / base


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    tmp = Path(tempfile.mkdtemp(prefix="nlpkit_bench_"))
    cfg = compose_cfg(args, tmp / "run")
    torch.use_deterministic_algorithms(bool(cfg.trainer.get("deterministic", False)))
    dm = load_data(cfg, args.max_train_examples)
    n_epochs = args.warmup + args.epochs
    variants = ["plain", "lightning_loss_only", "lightning_bare"]
    variants += [] if args.skip_default else ["nlpkit_default"]
    print(
        f"data={args.data} model={args.model} train_examples={len(dm.splits['train'])} "
        f"val_examples={len(dm.splits['val'])} batch_size={cfg.data.batch_size} "
        f"steps/epoch={len(dm.train_dataloader())} threads={torch.get_num_threads()} "
        f"epochs={args.warmup}+{args.epochs} rounds={args.rounds}",
        flush=True,
    )

    started = time.perf_counter()
    measured = {kind: {v: [] for v in variants} for kind in ("wall", "cpu")}
    val_measured: dict[str, list[float]] = {"wall": [], "cpu": []}
    steps: dict[str, int] = {}
    for round_index in range(args.rounds):
        for variant in variants:
            if variant == "plain":
                out = run_plain(cfg, dm, n_epochs, val_passes=0 if args.skip_default else args.epochs)
                val_measured["wall"] += out["val_s"]
                val_measured["cpu"] += out["val_cpu_s"]
            elif variant == "lightning_loss_only":
                out = run_lightning(cfg, dm, n_epochs, False, tmp / f"lossonly{round_index}", LossOnlyModule)
            elif variant == "lightning_bare":
                out = run_lightning(cfg, dm, n_epochs, False, tmp / f"bare{round_index}")
            else:
                out = run_lightning(cfg, dm, n_epochs, True, tmp / f"default{round_index}")
            measured["wall"][variant] += out["epoch_s"][args.warmup :]
            measured["cpu"][variant] += out["epoch_cpu_s"][args.warmup :]
            steps[variant] = out["steps"]
            print(
                f"round {round_index} {variant:>19}: wall "
                + " ".join(f"{t:.3f}" for t in out["epoch_s"])
                + "  cpu "
                + " ".join(f"{t:.3f}" for t in out["epoch_cpu_s"])
                + f" s/epoch (first {args.warmup} = warm-up), steps={out['steps']}",
                flush=True,
            )

    if len(set(steps.values())) != 1:
        raise SystemExit(f"variants ran different numbers of optimizer steps: {steps}")
    result = {
        "bench": "train_overhead",
        "data": args.data,
        "model": args.model,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": platform.python_version(),
        "train_examples": len(dm.splits["train"]),
        "batch_size": int(cfg.data.batch_size),
        "steps_per_variant": steps["plain"],
        "measured_epochs_per_variant": len(measured["wall"]["plain"]),
        "target_pct": 10.0,
    }
    print()
    for kind in ("wall", "cpu"):
        median = {v: statistics.median(ts) for v, ts in measured[kind].items()}
        overhead = {
            "lightning_bare_vs_plain": round(pct(median["lightning_bare"], median["plain"]), 2),
            "lightning_loss_only_vs_plain": round(pct(median["lightning_loss_only"], median["plain"]), 2),
        }
        print(f"median {kind} s/epoch over {result['measured_epochs_per_variant']} measured epochs:")
        for v in variants:
            print(f"  {v:>19}: {median[v]:.3f}")
        if "nlpkit_default" in median:
            val_s = statistics.median(val_measured[kind])
            median["plain+val"] = median["plain"] + val_s
            overhead["nlpkit_default_vs_plain+val"] = round(
                pct(median["nlpkit_default"], median["plain+val"]), 2
            )
            overhead["nlpkit_default_vs_plain"] = round(pct(median["nlpkit_default"], median["plain"]), 2)
            print(
                f"  {'plain+val':>19}: {median['plain+val']:.3f}  (plain + one no_grad val pass: {val_s:.3f})"
            )
        for name, value in overhead.items():
            print(f"  overhead {name:<28} {value:+6.1f}%")
        result[f"median_epoch_{kind}_s"] = {v: round(t, 4) for v, t in median.items()}
        result[f"overhead_{kind}_pct"] = overhead
    result["within_target"] = {
        kind: result[f"overhead_{kind}_pct"]["lightning_bare_vs_plain"] <= 10.0 for kind in ("wall", "cpu")
    }
    result["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print(
        f"lightning_bare vs plain: {result['overhead_wall_pct']['lightning_bare_vs_plain']:+.1f}% wall, "
        f"{result['overhead_cpu_pct']['lightning_bare_vs_plain']:+.1f}% CPU time (target <= 10%)"
    )
    line = json.dumps(result, sort_keys=True)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return result


if __name__ == "__main__":
    main()
