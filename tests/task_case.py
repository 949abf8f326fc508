"""The contract every task keeps, as one test case each task's test file subclasses.

A subclass names the task (``overrides``: what a user types, plus tiny widths) and the texts it
predicts on; the case then trains it for real through ``nlpkit.compose`` + ``nlpkit.train`` and checks:

- train -> save -> load: ``nlpkit.load(run_dir)`` predicts exactly what the trained model in memory
  predicts, and ``nlpkit.evaluate`` reproduces the run's test metrics;
- every parameter gets a gradient from one training step of each sub-task;
- padding and batch-size invariance: a text gets the same prediction alone and in a batch of longer ones;
- export parity: ``export_run`` writes one ONNX file whose gate passed, and ``OnnxPredictor`` (no torch
  needed) gives the PyTorch predictor's labels.

Classes whose name starts with ``Test`` are collected; this base is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import nlpkit
from nlpkit.config import validate

TOLERANCE = 1e-5


def assert_same_predictions(got: Any, want: Any, where: str = "prediction", tol: float = TOLERANCE) -> None:
    """Labels, tags and names equal; scores equal within ``tol`` (default ``TOLERANCE``; an exported
    file against PyTorch: the export gate's 1e-4)."""
    if isinstance(want, float):
        assert math.isclose(got, want, abs_tol=tol), f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same_predictions(got[key], want[key], f"{where}.{key}", tol)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{where}: {len(got)} items != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_predictions(g, w, f"{where}[{i}]", tol)
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


class TaskCase:
    """Subclass with ``overrides`` (compose overrides: the task, tiny widths) and ``texts``."""

    #: overrides naming the task and shrinking the model; the rest is the task's default config
    overrides: ClassVar[Sequence[str]] = ()
    #: texts to predict on (one of them longer than the others: padding invariance)
    texts: ClassVar[Sequence[str]] = (
        "wake me up at seven",
        "play some jazz",
        "what is the weather like in paris tomorrow morning and will it rain in the afternoon",
        "remind me to call mom",
    )
    #: the test metrics ``metrics.json`` must hold
    test_metrics: ClassVar[Sequence[str]] = ()
    #: keys of a prediction the exported model must reproduce exactly (per sub-task for multitask)
    label_keys: ClassVar[Sequence[str]] = ()
    #: keys of a prediction holding a number the exported model must reproduce within 1e-4
    value_keys: ClassVar[Sequence[str]] = ()
    #: for a multi-task run: the sub-task to export (``export_run(..., task=...)``)
    export_subtask: ClassVar[str | None] = None
    #: limits that keep the case fast; the model and data are the task's defaults otherwise
    trainer: ClassVar[Sequence[str]] = (
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=6",
        "+trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "logger=csv",
    )

    @pytest.fixture(scope="class")
    def run(self, tmp_path_factory, builtin_dir) -> dict[str, Any]:
        run_dir = tmp_path_factory.mktemp(f"case_{type(self).__name__}") / "run"
        cfg = nlpkit.compose(
            [f"paths.builtin_dir={builtin_dir}", *self.overrides, *self.trainer], output_dir=str(run_dir)
        )
        result = nlpkit.train(cfg)
        return {**result, "cfg": cfg}

    # ------------------------------------------------------------------ train -> save -> load
    def test_metrics_are_written(self, run):
        metrics = run["metrics"]
        for name in self.test_metrics:
            assert name in metrics, f"{name} missing from metrics.json: {sorted(metrics)}"
            assert math.isfinite(metrics[name])

    def test_reloaded_run_predicts_what_the_trained_model_predicts(self, run):
        from nlpkit.registry import get_task

        cfg = validate(run["cfg"].copy())
        task = get_task(str(cfg.task.name))
        datamodule, _ = task.restore(cfg, Path(run["run_dir"]))
        in_memory = task.predictor_for(cfg, run["model"], datamodule)
        reloaded = nlpkit.load(run["run_dir"])
        assert_same_predictions(reloaded.predict(list(self.texts)), in_memory.predict(list(self.texts)))

    def test_evaluate_reproduces_the_test_metrics(self, run):
        from nlpkit.evaluate import evaluate

        metrics = evaluate(run["run_dir"], output=Path(run["run_dir"]) / "eval_case" / "metrics.json")
        for name in self.test_metrics:
            assert math.isclose(metrics[name], run["metrics"][name], abs_tol=1e-6), name

    # ------------------------------------------------------------------ gradients
    def test_every_parameter_gets_a_gradient(self, run):
        from nlpkit.registry import get_task

        cfg = validate(run["cfg"].copy())
        task = get_task(str(cfg.task.name))
        datamodule, module = task.build(cfg)
        module.train()
        loss = sum(module._step(batch, "train") for batch in self._one_batch_per_task(datamodule))
        loss.backward()
        missing = [
            name
            for name, p in module.named_parameters()
            if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
        ]
        assert not missing, f"no gradient reaches {missing}"

    @staticmethod
    def _one_batch_per_task(datamodule) -> list:
        loader = datamodule.train_dataloader()
        batches, seen = [], set()
        for batch in loader:
            key = batch.get("task") if isinstance(batch, dict) else None
            if key not in seen:
                seen.add(key)
                batches.append(batch)
            if len(seen) == len(getattr(datamodule, "datamodules", {None: None})):
                break
        return batches

    # ------------------------------------------------------------------ padding / batch invariance
    def test_predictions_do_not_depend_on_batch_size_or_padding(self, run):
        predictor = nlpkit.load(run["run_dir"])
        texts = list(self.texts)
        together = predictor.predict(texts, batch_size=len(texts))
        alone = [predictor.predict([text], batch_size=1)[0] for text in texts]
        assert_same_predictions(alone, together)

    # ------------------------------------------------------------------ export parity
    def test_export_passes_the_gate_and_serves_the_same_labels(self, run):
        from nlpkit.export import export_run
        from nlpkit.serving.onnx_predictor import OnnxPredictor

        report = export_run(run["run_dir"], task=self.export_subtask)
        assert report["passed"] and "model.onnx" in report["files_written"]
        out_dir = Path(run["run_dir"]) / "export" / (self.export_subtask or "")
        served = OnnxPredictor(out_dir / "model.onnx").predict(list(self.texts))
        if self.export_subtask is None:
            torch_side = nlpkit.load(run["run_dir"]).predict(list(self.texts))
        else:
            torch_side = nlpkit.load(run["run_dir"]).predict(list(self.texts), task=self.export_subtask)
        for key in self.label_keys:
            assert [p[key] for p in served] == [p[key] for p in torch_side], key
        for key in self.value_keys:
            for got, want in zip(served, torch_side):
                assert math.isclose(got[key], want[key], abs_tol=1e-4), (key, got[key], want[key])
