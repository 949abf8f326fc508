"""Multi-task training: schedules, sub-task config validation, module sharing, and intent-only
(``doc_cls`` over ``featurizer=word``) + slot-only sub-tasks trained together, saved, reloaded and
evaluated."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

import nlpkit
from nlpkit.config import validate
from nlpkit.errors import ConfigError, ExportError
from nlpkit.predict import predict_file
from nlpkit.tasks import get_task
from nlpkit.tasks.doc_cls.task import DocClassificationTask
from nlpkit.tasks.multitask.data import MultiTaskBatches, task_order
from nlpkit.training.resume import newest_checkpoint
from tests.conftest import JOINT_TINY, data_overrides, run_module
from tests.task_case import TaskCase, assert_same_predictions

TINY = [*JOINT_TINY, "logger=csv", "debug=fast"]


#: a doc_cls sub-task's own encoder and head beside the word-level top-level model (joint_bilstm): each
#: part has another _target_, so it replaces the top-level one
DOC_PARTS = (
    "{representation: {_target_: nlpkit.modules.representation.BiLSTMRepresentation, hidden_dim: 8}, "
    "decoder: {_target_: nlpkit.modules.decoder.MLPDecoder, hidden_dims: [8]}, "
    "output: {_target_: nlpkit.modules.output.SoftmaxOutput}}"
)


@nlpkit.register_task
class NoMetricsDocTask(DocClassificationTask):
    """A user's task that does not say which metrics it logs: it cannot be a sub-task."""

    name = "no_metrics_doc"
    metric_names = ()


@pytest.fixture
def compose(tmp_path, small_data):
    """``compose(*overrides, task=...)``: a tiny multitask (or single-task) config on the small data."""

    def _compose(*overrides: str, task: str = "multitask", tmp: Path = tmp_path):
        if task == "multitask":
            data = data_overrides(small_data, "task.tasks.intents.data") + data_overrides(
                small_data, "task.tasks.slots.data"
            )
        else:
            data = data_overrides(small_data, "data")
        return nlpkit.compose([f"task={task}", *TINY, *data, *overrides], output_dir=str(tmp / "run"))

    return _compose


@pytest.fixture(scope="module")
def base_cfg(small_data, tmp_path_factory):
    """One composed multitask config; tests change copies of it (composing takes seconds)."""
    data = data_overrides(small_data, "task.tasks.intents.data") + data_overrides(
        small_data, "task.tasks.slots.data"
    )
    return nlpkit.compose(
        ["task=multitask", *TINY, *data], output_dir=str(tmp_path_factory.mktemp("base") / "run")
    )


def with_overrides(cfg, *overrides: str):
    """A copy of ``cfg`` with ``key=value`` overrides (``+key`` adds a key, as on the command line)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for override in overrides:
            key, value = override.lstrip("+").split("=", 1)
            OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False, force_add=True)
    return cfg


def read_test_split(cfg) -> list[dict]:
    path = Path(cfg.task.tasks.slots.data.test_path)
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- schedules
def test_round_robin_takes_turns_until_every_batch_is_used():
    order = task_order({"a": 3, "b": 1, "c": 2}, "round_robin", 2.0, random.Random(0))
    assert order == ["a", "b", "c", "a", "c", "a"]


def test_proportional_uses_every_batch_once_in_a_seeded_order():
    sizes = {"a": 30, "b": 10}
    first = task_order(sizes, "proportional", 2.0, random.Random(1))
    assert first == task_order(sizes, "proportional", 2.0, random.Random(1))
    assert first != task_order(sizes, "proportional", 2.0, random.Random(2))
    assert first.count("a") == 30 and first.count("b") == 10


def test_temperature_flattens_task_probabilities():
    sizes = {"big": 900, "small": 100}
    near_proportional = task_order(sizes, "temperature", 1.0, random.Random(0))
    near_uniform = task_order(sizes, "temperature", 100.0, random.Random(0))
    assert len(near_proportional) == len(near_uniform) == 1000
    assert 0.05 < near_proportional.count("small") / 1000 < 0.15
    assert 0.4 < near_uniform.count("small") / 1000 < 0.6


def test_temperature_restarts_an_exhausted_task_and_epochs_reshuffle():
    loaders = {"big": [f"big{i}" for i in range(6)], "small": ["small0"]}
    batches = MultiTaskBatches(loaders, "temperature", 100.0, seed=0)
    epoch = list(batches)
    assert len(epoch) == len(batches) == 7
    assert epoch.count("small0") >= 2  # drawn more often than it has batches: it started over
    proportional = MultiTaskBatches(loaders, "proportional", 1.0, seed=0)
    epochs = [list(proportional) for _ in range(4)]
    assert all(sorted(e) == sorted(loaders["big"] + loaders["small"]) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1


def test_a_resumed_epoch_draws_the_same_order_as_the_original_run():
    loaders = {"a": [f"a{i}" for i in range(5)], "b": ["b0", "b1", "b2"]}
    resumed = MultiTaskBatches(loaders, "proportional", 1.0, seed=0, epoch_source=lambda: 3)
    counted = MultiTaskBatches(loaders, "proportional", 1.0, seed=0)
    assert [list(counted) for _ in range(4)][3] == list(resumed) == list(resumed)


@pytest.mark.parametrize("schedule", ["temperature", "proportional", "round_robin"])
def test_resuming_at_any_step_continues_the_epoch_exactly(schedule):
    """A fresh ``MultiTaskBatches`` (as in a resumed process) given the saved position yields the rest
    of the epoch: the same tasks in the same order, each sub-task's sampler past the batches it already
    gave, including a sub-task that ran out and started over on a reshuffled pass (``temperature``)."""
    from torch.utils.data import DataLoader

    from nlpkit.data.batching import BucketBatchSampler

    def loaders() -> dict[str, DataLoader]:
        sizes = {"big": 23, "small": 5}  # 6 and 2 batches of 4
        return {
            name: DataLoader(
                list(range(n)),
                batch_sampler=BucketBatchSampler([1 + i % 3 for i in range(n)], 4, shuffle=True, seed=7),
                collate_fn=lambda items, name=name: (name, tuple(items)),
            )
            for name, n in sizes.items()
        }

    def fresh() -> MultiTaskBatches:
        return MultiTaskBatches(loaders(), schedule, 50.0, seed=1, epoch_source=lambda: 2)

    epoch = list(fresh())
    if schedule == "temperature":
        assert len({b for b in epoch if b[0] == "small"}) < sum(b[0] == "small" for b in epoch)  # restarted
    for step in range(len(epoch) + 1):
        resumed = fresh()
        resumed.load_state_dict({"epoch": 2, "batches_done": step})
        assert list(resumed) == epoch[step:], step
        assert resumed.state_dict() == {"epoch": 2, "batches_done": len(epoch)}


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["+task.tasks.slots.data.tag_shceme=BIO"],
            "task.tasks.slots.data.tag_shceme; did you mean 'tag_scheme'",
        ),
        (["+task.tasks.slots.weight=2"], "task.tasks.slots.weight; did you mean 'loss_weight'"),
        (
            ["task.tasks.slots.task=multitask"],
            "task.tasks.slots.task='multitask' cannot be a multi-task sub-task: a multi-task run does not nest",
        ),
        (["task.tasks.slots.task=tagger"], "task.tasks.slots.task='tagger' is not a registered task"),
        (
            ["task.tasks.slots.task=no_metrics_doc", "task.tasks.slots.data={format: jsonl}"],
            "NoMetricsDocTask declares no metric_names",
        ),
        (
            [
                "task.tasks.slots.task=doc_cls",
                "task.tasks.slots.data={}",
                f"task.tasks.slots.model={DOC_PARTS}",
                "task.tasks.slots.metric=span_f1",
            ],  # fmt: skip
            "'span_f1' is not a metric of task doc_cls; choose one of accuracy, macro_f1",
        ),
        (
            ["task.tasks.slots.task=doc_cls", "task.tasks.slots.data={format: jsonl, streaming: true}"],
            "task.tasks.slots.data.streaming=true: a streamed training file",
        ),
        (["task.tasks.slots.data.format=csv"], "task.tasks.slots.data.format='csv' is not a valid choice"),
        (["task.tasks.slots.loss_weight=-1"], "loss_weight=-1.0 must be >= 0"),
        (["task.schedule=random"], "round_robin, proportional, temperature"),
        (
            ["task.tasks.slots.metric=span_f"],
            "task.tasks.slots.metric='span_f' is not a metric of task tagging; did you mean 'span_f1'",
        ),
        (
            ["task.monitor=val/slots/slot_f1"],
            "'slot_f1' is not a metric of task tagging; choose one of span_f1",
        ),
        (
            ["task.shared=[embedding,encoder]"],
            "'encoder' is not a shareable module: task.tasks.intents.model has no component 'encoder'",
        ),
        (
            ["task.monitor=val/atis/slot_f1"],
            "val/<sub-task>/<metric> with a sub-task of task.tasks (intents, slots)",
        ),
        (["+task.tasks.slots.model.representation.hiden_dim=3"], "did you mean 'hidden_dim'"),
    ],
)
def test_bad_sub_task_config_fails_naming_the_path(base_cfg, overrides, expected):
    with pytest.raises(ConfigError) as err:
        validate(with_overrides(base_cfg, *overrides))
    assert expected in str(err.value)


def test_top_level_data_values_apply_to_every_sub_task(base_cfg):
    cfg = validate(with_overrides(base_cfg, "data.batch_size=7", "task.tasks.slots.data.eval_batch_size=9"))
    assert [cfg.task.tasks[n].data.batch_size for n in ("intents", "slots")] == [7, 7]
    assert cfg.task.tasks.slots.data.eval_batch_size == 9
    assert cfg.task.tasks.intents.metric == "accuracy" and cfg.task.tasks.slots.metric == "span_f1"
    # the doc_cls sub-task: word-level features, the top-level document head as its decoder/output
    intents = cfg.task.tasks.intents
    assert intents.task == "doc_cls" and intents.data.featurizer.name == "word"
    assert intents.model.decoder._target_ == "nlpkit.modules.decoder.MLPDecoder"
    assert intents.model.output == cfg.model.doc_output  # replaced, not merged into the CRF's keys


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task.shared=[embedding,pooling]"], "sub-task 'slots' has no such module"),
        (["task.tasks.slots.data.featurizer.lowercase=false"], "differ in lowercase"),
        (
            ["+task.tasks.slots.model.representation.hidden_dim=8"],
            "sub-task 'slots''s representation is not the same",
        ),
    ],
)
def test_sharing_what_cannot_be_shared_is_refused(base_cfg, overrides, expected):
    cfg = validate(with_overrides(base_cfg, *overrides))
    with pytest.raises(ConfigError) as err:
        get_task("multitask").build(cfg)
    assert expected in str(err.value)


def test_shared_modules_are_one_object_with_one_vocabulary(base_cfg):
    # The slot-only data as a joint intent-slot sub-task: both sub-tasks then pool their states too.
    cfg = validate(
        with_overrides(
            base_cfg,
            "task.tasks.slots.task=intent_slot",
            "task.tasks.slots.metric=frame_accuracy",
            "task.shared=[embedding,representation,pooling]",
        )
    )
    dm, module = get_task("multitask").build(cfg)
    intents, slots = module.model["intents"], module.model["slots"]
    for part in ("embedding", "representation", "pooling"):
        assert getattr(intents, part) is getattr(slots, part), part
    assert dm.datamodules["intents"].featurizer is dm.datamodules["slots"].featurizer
    unique = {id(p) for m in module.model.values() for p in m.parameters()}
    assert len(list(module.parameters())) == len(unique)  # the optimizer sees each parameter once


def test_every_trainable_parameter_gets_a_gradient_from_the_weighted_losses(base_cfg):
    cfg = validate(with_overrides(base_cfg, "task.tasks.intents.loss_weight=0.5"))
    dm, module = get_task("multitask").build(cfg)
    first_batches = {}
    for batch in dm.train_dataloader():  # round robin: one batch of each task first
        first_batches.setdefault(batch["task"], batch)
        if len(first_batches) == 2:
            break
    sum(module._step(batch, "train") for batch in first_batches.values()).backward()
    for name, param in module.model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- intent-only + slot-only, end to end
@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, small_data):
    data = data_overrides(small_data, "task.tasks.intents.data") + data_overrides(
        small_data, "task.tasks.slots.data"
    )
    cfg = nlpkit.compose(
        ["task=multitask", *TINY, *data, "trainer.limit_train_batches=12", "task.schedule=proportional"],
        output_dir=str(tmp_path_factory.mktemp("multitask") / "run"),
    )
    return cfg, nlpkit.train(cfg)


def test_metrics_are_prefixed_and_selection_uses_the_mean_target(multitask_run):
    cfg, result = multitask_run
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for stage in ("val", "test"):
        assert 0.0 <= metrics[f"{stage}/intents/accuracy"] <= 1.0
        assert 0.0 <= metrics[f"{stage}/slots/span_f1"] <= 1.0
        mean = (metrics[f"{stage}/intents/accuracy"] + metrics[f"{stage}/slots/span_f1"]) / 2
        assert metrics[f"{stage}/mean_target"] == pytest.approx(mean, abs=1e-6)
    assert not any("dataloader_idx" in key for key in metrics)
    assert result["optimized_metric"] == pytest.approx(metrics["val/mean_target"])
    assert metrics["global_steps"] == 12
    assert {p.name for p in (run_dir / "tasks" / "intents").iterdir()} >= {
        "tokenizer.json",
        "chars.json",
        "labels.json",
    }
    assert (run_dir / "tasks" / "slots" / "span_report.json").is_file()
    shared = run_dir / "tasks"
    assert (shared / "intents" / "tokenizer.json").read_bytes() == (
        shared / "slots" / "tokenizer.json"
    ).read_bytes()


def test_load_gives_each_sub_task_and_reproduces_its_test_metrics(multitask_run):
    cfg, result = multitask_run
    run_dir = result["run_dir"]
    test = read_test_split(validate(cfg))
    texts = [" ".join(ex["tokens"]) for ex in test]
    predictor = nlpkit.load(run_dir)
    assert predictor.tasks == ["intents", "slots"]
    intents = predictor.predict(texts, task="intents")
    slots = predictor.predict(texts, task="slots")
    again = nlpkit.load(run_dir).predict(texts[:40], batch_size=7)  # fresh load, other padding, both tasks
    # labels and tags exactly; scores within float noise (another batch size is another GEMM blocking)
    assert_same_predictions([p["intents"] for p in again], intents[:40], "intents")
    assert_same_predictions([p["slots"] for p in again], slots[:40], "slots")
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    accuracy = sum(p["label"] == ex["intent"] for p, ex in zip(intents, test)) / len(test)
    assert accuracy == pytest.approx(metrics["test/intents/accuracy"], abs=1e-6)
    tokens = sum(len(ex["slots"]) for ex in test)
    right = sum(a == b for p, ex in zip(slots, test) for a, b in zip(p["tags"], ex["slots"]))
    assert right / tokens == pytest.approx(metrics["test/slots/token_accuracy"], abs=1e-6)
    with pytest.raises(KeyError, match="its sub-tasks: intents, slots"):
        predictor.predict(texts[:1], task="atis")


def test_evaluate_and_predict_clis_work_on_a_multitask_run(multitask_run, tmp_path):
    cfg, result = multitask_run
    run_dir = Path(result["run_dir"])
    from nlpkit.evaluate import evaluate

    metrics = json.loads((run_dir / "metrics.json").read_text())
    again = evaluate(run_dir, output=tmp_path / "eval.json")
    for key in ("test/intents/accuracy", "test/slots/span_f1", "test/mean_target"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key
    (tmp_path / "in.txt").write_text("wake me up at 7 am\nplay jazz\n")
    predict_file(run_dir, tmp_path / "in.txt", tmp_path / "out.jsonl")  # what the predict CLI runs
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["text"] for line in lines] == ["wake me up at 7 am", "play jazz"]
    assert set(lines[0]) == {"text", "intents", "slots"} and len(lines[1]["slots"]["tags"]) == 2


def test_evaluate_swaps_one_subtask_test_file(multitask_run, small_data, tmp_path):
    """``task.tasks.NAME.data.test_path=FILE`` re-scores that sub-task on FILE; the others keep theirs."""
    from nlpkit.evaluate import main as evaluate_cli
    from nlpkit.metrics.spans import span_f1

    _, result = multitask_run
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = (small_data / "test.jsonl").read_text().splitlines()[100:140]
    (tmp_path / "other.jsonl").write_text("\n".join(lines) + "\n")
    output = tmp_path / "eval.json"
    evaluate_cli(
        [
            f"run_dir={run_dir}",
            f"task.tasks.slots.data.test_path={tmp_path / 'other.jsonl'}",
            f"output={output}",
        ]
    )
    again = json.loads(output.read_text())
    records = [json.loads(line) for line in lines]
    predicted = nlpkit.load(run_dir).predict([" ".join(r["tokens"]) for r in records], task="slots")
    want = span_f1([r["slots"] for r in records], [p["tags"] for p in predicted])
    assert again["test/slots/span_f1"] == pytest.approx(want, abs=1e-6)
    assert again["test/intents/accuracy"] == pytest.approx(metrics["test/intents/accuracy"], abs=1e-6)
    for bad, message in [
        ("task.tasks.nope.data.test_path=x", "no sub-task 'nope'"),
        ("task.tasks.slots.model.x=1", "only a sub-task's data"),
        ("task.schedule=round_robin", "only a sub-task's data"),
    ]:
        with pytest.raises(ConfigError, match=message):
            evaluate_cli([f"run_dir={run_dir}", bad, f"output={output}"])


def test_multitask_run_killed_mid_epoch_resumes_to_the_same_metrics(small_data, tmp_path):
    """SIGTERM after step 8 of a 10-step epoch (newest checkpoint: step 6), then resume=auto: the resumed
    run must continue the epoch's task schedule, each sub-task's batch order and its unk-replacement
    draws where they stopped, and end bit-identical to an uninterrupted run (no tolerance)."""
    overrides = ["task=multitask", *TINY, *data_overrides(small_data, "task.tasks.intents.data"),
                 *data_overrides(small_data, "task.tasks.slots.data"), "task.schedule=temperature",
                 "task.tasks.slots.data.unk_replace_prob=0.5", "num_threads=1", "trainer.max_epochs=2",
                 "trainer.limit_train_batches=10", "trainer.limit_val_batches=2",
                 "callbacks.step_checkpoint.every_n_train_steps=3"]  # fmt: skip
    reference = nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "reference")))
    assert reference["metrics"]["global_steps"] == 20
    run_dir = tmp_path / "killed"
    proc = run_module(
        "nlpkit.train",
        [*overrides, f"hydra.run.dir={run_dir}", "resume=auto", "+callbacks.kill._target_=tests.kill_switch.KillAfterStep",
         "+callbacks.kill.step=8", "+callbacks.kill.signal_name=SIGTERM"],
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert newest_checkpoint(run_dir).name == "step.ckpt"
    resumed = nlpkit.train(nlpkit.compose([*overrides, "resume=auto"], output_dir=str(run_dir)))
    assert Path(json.loads((run_dir / "run.json").read_text())["resumed_from"]).name == "step.ckpt"
    want, got = dict(reference["metrics"]), dict(resumed["metrics"])
    want.pop("train_seconds"), got.pop("train_seconds")
    assert got == want


def test_resume_auto_continues_a_multitask_run_with_its_vocabularies(compose, tmp_path):
    first = nlpkit.train(compose("trainer.max_epochs=1"))
    resumed = nlpkit.train(compose("trainer.max_epochs=2", "resume=auto"))
    run_dir = Path(resumed["run_dir"])
    assert first["run_dir"] == resumed["run_dir"]
    assert json.loads((run_dir / "run.json").read_text())["resumed_from"].endswith("last.ckpt")
    assert (resumed["metrics"]["epochs"], resumed["metrics"]["global_steps"]) == (
        2,
        6,
    )  # debug=fast: 3 a epoch


def test_atis_snips_experiment_composes(tmp_path):
    cfg = validate(nlpkit.compose(["experiment=atis_snips"], output_dir=str(tmp_path / "run")))
    assert cfg.task.name == "multitask" and list(cfg.task.tasks) == ["atis", "snips"]
    for name in ("atis", "snips"):
        node = cfg.task.tasks[name]
        assert node.task == "intent_slot" and node.metric == "frame_accuracy"
        assert node.data.format == "parallel" and node.data.train_path.endswith(f"{name}_slotgated/train")
        assert node.data.batch_size == 32 and node.model.name == "joint_bilstm"
    assert list(cfg.task.shared) == ["embedding", "representation"]


class TestMultiTaskContract(TaskCase):
    """``task=multitask`` (the built-in intent-only + slot-only sub-tasks sharing embedding + BiLSTM)
    keeps the contract; its slot sub-task is the one exported."""

    overrides = ("task=multitask", *JOINT_TINY)
    test_metrics = ("test/mean_target",)
    label_keys = ("tags",)
    export_subtask = "slots"


# ---------------------------------------------------------------- document classifiers as sub-tasks
# Two doc_cls sub-tasks (conf/multitask/builtin_doc.yaml) on the same texts: the intent, and the
# phrasing (`kind`: plain / ambiguous / negated / two_requests) with its own label set.
# each sub-task brings its own document model (the preset's defaults): shrink both
DOC_TINY = [
    f"task.tasks.{name}.model.{key}"
    for name in ("intents", "phrasing")
    for key in ("embedding.embed_dim=16", "decoder.hidden_dims=[8]", "representation.hidden_dim=16",
                "representation.attention_dim=8")
] + ["logger=csv", "debug=fast"]  # fmt: skip


def doc_overrides(small_data) -> list[str]:
    return [
        "task=multitask",
        "multitask=builtin_doc",
        *DOC_TINY,
        *data_overrides(small_data, "task.tasks.intents.data"),
        *data_overrides(small_data, "task.tasks.phrasing.data"),
    ]


@pytest.fixture(scope="module")
def doc_cfg(small_data, tmp_path_factory):
    return nlpkit.compose(doc_overrides(small_data), output_dir=str(tmp_path_factory.mktemp("doc") / "run"))


@pytest.fixture(scope="module")
def doc_run(small_data, tmp_path_factory):
    cfg = nlpkit.compose(
        [*doc_overrides(small_data), "trainer.limit_train_batches=16", "task.schedule=proportional"],
        output_dir=str(tmp_path_factory.mktemp("doc_run") / "run"),
    )
    return cfg, nlpkit.train(cfg)


def test_doc_cls_sub_tasks_share_one_featurizer_and_encoder(doc_run):
    cfg, result = doc_run
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_steps"] == 16
    for stage in ("val", "test"):
        for key in ("intents/accuracy", "intents/macro_f1", "phrasing/accuracy", "phrasing/macro_f1"):
            assert 0.0 <= metrics[f"{stage}/{key}"] <= 1.0, key
        # the phrasing sub-task's target is its macro F1 (conf/multitask/builtin_doc.yaml)
        mean = (metrics[f"{stage}/intents/accuracy"] + metrics[f"{stage}/phrasing/macro_f1"]) / 2
        assert metrics[f"{stage}/mean_target"] == pytest.approx(mean, abs=1e-6)
    assert metrics["data/skipped_rows"] > 0  # kind=held_out rows of valid/test: counted, not scored
    tasks = run_dir / "tasks"
    assert (tasks / "intents" / "tokenizer.json").read_bytes() == (
        tasks / "phrasing" / "tokenizer.json"
    ).read_bytes()
    assert json.loads((tasks / "phrasing" / "labels.json").read_text()) != json.loads(
        (tasks / "intents" / "labels.json").read_text()
    )
    assert (tasks / "intents" / "confusion_matrix.png").is_file()
    _, module = get_task("multitask").restore(validate(cfg), run_dir)
    intents, phrasing = module.model["intents"], module.model["phrasing"]
    assert intents.embedding is phrasing.embedding and intents.representation is phrasing.representation
    assert intents.decoder is not phrasing.decoder  # each its own head, sized for its labels
    assert intents.decoder.output_dim == 10 and phrasing.decoder.output_dim == 4


def test_doc_cls_sub_tasks_reload_with_identical_predictions_and_metrics(doc_run, small_data, tmp_path):
    from nlpkit.evaluate import evaluate

    _, result = doc_run
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = [json.loads(line) for line in (small_data / "test.jsonl").read_text().splitlines()]
    texts = [row["text"] for row in test]
    first = nlpkit.load(run_dir).predict(texts)
    again = nlpkit.load(run_dir).predict(texts, batch_size=5)  # fresh load, other padding
    assert_same_predictions(again, first)  # labels exactly, scores within float noise
    intents = sum(p["intents"]["label"] == row["intent"] for p, row in zip(first, test)) / len(test)
    assert intents == pytest.approx(metrics["test/intents/accuracy"], abs=1e-6)
    scored = [(p, row) for p, row in zip(first, test) if row["kind"] != "held_out"]
    phrasing = sum(p["phrasing"]["label"] == row["kind"] for p, row in scored) / len(scored)
    assert phrasing == pytest.approx(metrics["test/phrasing/accuracy"], abs=1e-6)
    evaluated = evaluate(run_dir, output=tmp_path / "eval.json")
    for key in ("test/intents/accuracy", "test/phrasing/macro_f1", "val/mean_target", "test/mean_target"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-6), key


def test_each_doc_cls_sub_task_exports_to_its_own_onnx_file(doc_run, small_data):
    """``python -m nlpkit.export run_dir=DIR task=NAME``: that sub-task's shared encoder + its head,
    its vocabularies from tasks/NAME/, gated against its PyTorch predictor; the file answers like it."""
    from nlpkit.export import export_run
    from nlpkit.serving.onnx_predictor import OnnxPredictor

    _, result = doc_run
    run_dir = Path(result["run_dir"])
    run_module("nlpkit.export", [f"run_dir={run_dir}", "task=intents"])
    report = export_run(run_dir, task="phrasing")  # the same, in process
    texts = [json.loads(line)["text"] for line in (small_data / "test.jsonl").read_text().splitlines()][:60]
    torch_predictor = nlpkit.load(run_dir)
    for name in ("intents", "phrasing"):
        saved = json.loads((run_dir / "export" / name / "export_report.json").read_text())
        assert saved["passed"] and saved["subtask"] == name and saved["task"] == "doc_cls"
        onnx = OnnxPredictor(run_dir / "export" / name)
        want = torch_predictor.predict(texts, task=name)
        got = onnx.predict(texts)
        assert [g["label"] for g in got] == [w["label"] for w in want], name
    assert report["metrics"]["test_onnx"]["accuracy"] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["test/phrasing/accuracy"], abs=1e-6
    )
    with pytest.raises(ExportError, match="has no sub-task 'kinds'"):
        export_run(run_dir, task="kinds")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["task.shared=[embedding,representation,decoder]"],
            "sub-tasks 'intents' and 'phrasing' have different labels for it (10: add_to_list",
        ),
        (
            ["task.tasks.phrasing.data.featurizer.split_punctuation=false"],
            "task.tasks.phrasing.data.featurizer differ in split_punctuation",
        ),
    ],
)
def test_doc_cls_sub_tasks_refuse_what_they_cannot_share(doc_cfg, overrides, expected):
    with pytest.raises(ConfigError) as err:
        get_task("multitask").build(validate(with_overrides(doc_cfg, *overrides)))
    assert expected in str(err.value)


def test_a_shared_embedding_needs_one_featurizer_kind(base_cfg, small_data):
    """A doc_cls sub-task over word-level token features (featurizer=word) and one over the sub-word
    tokenizer (featurizer=subword) cannot share an embedding: one embedding cannot read both."""
    train, val = small_data / "train.jsonl", small_data / "valid.jsonl"
    data = f"{{format: jsonl, train_path: {train}, val_path: {val}}}"
    cfg = validate(with_overrides(base_cfg, "task.tasks.slots.task=doc_cls", f"task.tasks.slots.data={data}",
                                  f"task.tasks.slots.model={DOC_PARTS}", "task.tasks.slots.metric=accuracy"))  # fmt: skip
    with pytest.raises(ConfigError) as err:
        get_task("multitask").build(cfg)
    assert (
        "sub-task 'intents' (task doc_cls) featurizes with 'word' and sub-task 'slots' (task doc_cls) with 'subword'"
        in str(err.value)
    )


def test_a_sub_task_model_part_with_another_target_replaces_the_top_level_one(base_cfg):
    """A doc_cls sub-task beside word-level ones brings its own sequence-to-vector encoder and document
    head: their keys are other classes', so each replaces the top-level part instead of being merged
    into it (merged, the token BiLSTM's keys would be refused)."""
    import tests.ext_example  # noqa: F401  (a user's own task, example_doc, as a sub-task)

    cfg = validate(with_overrides(base_cfg, "task.tasks.slots.task=example_doc", "task.tasks.slots.data={}",
                                  f"task.tasks.slots.model={DOC_PARTS}", "task.tasks.slots.metric=macro_f1",
                                  "task.shared=[embedding]"))  # fmt: skip
    node = cfg.task.tasks.slots
    assert node.task == "example_doc" and node.metric == "macro_f1"
    assert OmegaConf.to_container(node.model.representation) == {
        "_target_": "nlpkit.modules.representation.BiLSTMRepresentation",
        "hidden_dim": 8,
    }
    assert node.model.decoder.hidden_dims == [8] and "activation" not in node.model.decoder
    assert node.model.embedding == base_cfg.model.embedding  # not overridden: the top-level one
    assert cfg.task.tasks.intents.model.representation == base_cfg.model.representation
    # inherited as they are, the token BiLSTM is fine (the top-level pooling reduces its states: what
    # multitask=builtin's doc_cls sub-task does) but the CRF word-level output is refused
    with pytest.raises(ConfigError, match="CRFOutput is a word-level output layer; task=example_doc needs a"):
        validate(with_overrides(base_cfg, "task.tasks.slots.task=example_doc", "task.tasks.slots.data={}"))
