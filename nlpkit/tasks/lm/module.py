"""Language model: the LightningModule. Loss = mean NLL per target token; perplexity and tokens/s.

In ``data.mode=stream`` the hidden state is carried from one batch to the next within an epoch (and
detached: truncated BPTT), and reset when each train/val/test epoch starts; in ``sentence`` mode
every batch starts from a zero state.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from nlpkit.metrics.perplexity import Perplexity
from nlpkit.training.module import TaskModule


class LMModule(TaskModule):
    """Logs ``{stage}/perplexity`` (one pass over the split, every target, ``<eos>`` included),
    ``{stage}/loss`` and ``train/tokens_per_second``/``{stage}/tokens_per_second``."""

    def __init__(
        self, model, optim_cfg, stateful: bool, monitor: str = "val/perplexity", monitor_mode: str = "min"
    ):
        super().__init__(model, [], optim_cfg, monitor, monitor_mode)
        self.stateful = stateful
        self.metrics = nn.ModuleDict({f"{stage}_metrics": Perplexity() for stage in ("train", "val", "test")})
        self._state: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {}
        self._clock: dict[str, tuple[float, int]] = {}
        self._running: str | None = None

    @staticmethod
    def batch_size(batch: dict) -> int:
        """Losses are means per target token, so an epoch's mean weighs each batch by its targets."""
        return int(batch["mask"].sum())

    def _stage(self) -> str:
        if self._running is not None:  # set by _step: the stage Lightning (or a multi-task host) runs
            return self._running
        if self.training:
            return "train"
        trainer = self._trainer  # None outside a Trainer (a notebook calling the module)
        return "test" if trainer is not None and trainer.testing else "val"

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        self._running = stage
        try:
            return super()._step(batch, stage)
        finally:
            self._running = None

    def forward(self, batch: dict) -> dict:
        stage = self._stage()
        state = self._state.get(stage) if self.stateful else None
        outputs = self.model(batch, state)
        if self.stateful:
            self._state[stage] = tuple(s.detach() for s in outputs["state"])  # truncated BPTT
        start, tokens = self._clock.get(stage, (time.perf_counter(), 0))
        self._clock[stage] = (start, tokens + int(batch["mask"].sum()))
        return outputs

    def losses(self, outputs, batch):
        mask = batch["mask"]
        return {"loss": -outputs["log_probs"][mask].mean()}

    def update_metrics(self, outputs, batch, stage):
        self.metrics[f"{stage}_metrics"].update(outputs["log_probs"].detach(), batch["mask"])

    def reset_metrics(self, stage):
        self.metrics[f"{stage}_metrics"].reset()
        self._state[stage] = None  # each epoch reads its split's stream from the start
        self._clock[stage] = (time.perf_counter(), 0)

    def compute_metrics(self, stage):
        values = {f"{stage}/perplexity": self.metrics[f"{stage}_metrics"].compute()}
        start, tokens = self._clock.get(stage, (time.perf_counter(), 0))
        elapsed = time.perf_counter() - start
        values[f"{stage}/tokens_per_second"] = torch.tensor(tokens / elapsed if elapsed > 0 else 0.0)
        return values
