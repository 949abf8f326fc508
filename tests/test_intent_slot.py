"""Joint intent-slot: data with intents, frame metrics, gradients, train -> load -> predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import nlpkit
from nlpkit.config import validate
from nlpkit.data.inputs import EmptyTextError
from nlpkit.errors import ConfigError, DataError
from nlpkit.metrics import FrameAccuracy, SpanF1
from nlpkit.modules.masking import sequence_mask
from nlpkit.tasks import get_task
from nlpkit.tasks.intent_slot.model import build_intent_slot_model
from tests.conftest import JOINT_TINY
from tests.task_case import TaskCase

TINY = [*JOINT_TINY, "logger=csv", "debug=fast"]


def compose(tmp: Path, *overrides: str, run: str = "run"):
    return nlpkit.compose(
        ["task=intent_slot", f"paths.builtin_dir={tmp}/builtin", *TINY, *overrides],
        output_dir=str(tmp / run),
    )


def write_split(directory: Path, rows: list[tuple[str, str, str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, column in (("seq.in", 0), ("seq.out", 1), ("label", 2)):
        (directory / name).write_text("".join(row[column] + "\n" for row in rows))
    return directory


TRAIN = [
    ("fly from boston to denver", "O O B-fromloc O B-toloc", "atis_flight"),
    ("show fares from dallas", "O O O B-fromloc", "atis_airfare"),
    ("flights and fares to new york", "O O O O B-toloc I-toloc", "atis_flight#atis_airfare"),
    ("what does ua mean", "O O B-code O", "atis_abbreviation"),
] * 4


# ---------------------------------------------------------------- metrics
def test_frame_accuracy_matches_hand_computation():
    scorer = FrameAccuracy(["a", "b"])
    gold_intents = ["a", "b", "a", "c"]
    pred_intents = ["a", "b", "b", "a"]
    gold_tags = [["O", "B-x"], ["B-y"], ["O"], ["O", "O"]]
    pred_tags = [["O", "B-x"], ["O"], ["O"], ["O", "O"]]
    scorer.update(gold_intents[:2], pred_intents[:2], gold_tags[:2], pred_tags[:2])  # counts accumulate
    scorer.update(gold_intents[2:], pred_intents[2:], gold_tags[2:], pred_tags[2:])
    # 1: intent and slots right -> frame right; 2: intent right, a slot wrong; 3: intent wrong;
    # 4: gold intent "c" unseen in training -> wrong, counted.
    frames = scorer.compute()
    assert frames["intent_accuracy"] == pytest.approx(2 / 4)
    assert frames["frame_accuracy"] == pytest.approx(1 / 4)
    assert frames["unseen_intents"] == 1
    scorer.reset()
    assert scorer.compute() == {
        "intent_accuracy": 0.0,
        "frame_accuracy": 0.0,
        "unseen_intents": 0.0,
        "total": 0.0,
    }


def test_span_f1_metric_matches_seqeval_and_counts_unseen_types():
    from seqeval.metrics import f1_score

    gold = [["B-x", "I-x", "O", "B-y"], ["O", "B-y", "I-y"], ["B-x"]]
    pred = [["B-x", "I-x", "O", "O"], ["O", "B-y", "O"], ["B-y"]]
    metric = SpanF1(["O", "B-x", "I-x", "B-y", "I-y"])
    for g, p in zip(gold, pred):  # one sentence a batch: the counts, not the ratios, accumulate
        metric.update([g], [p])
    spans = metric.compute()
    assert spans["report"]["overall"]["f1"] == pytest.approx(f1_score(gold, pred))
    assert spans["report"]["x"]["support"] == 2 and spans["report"]["y"]["predicted"] == 2
    assert spans["token_accuracy"] == pytest.approx(5 / 8)
    metric.update([["B-z", "O"]], [["O", "O"]])  # a type training never saw: a recall error, still counted
    gold.append(["B-z", "O"])
    pred.append(["O", "O"])
    spans = metric.compute()
    assert spans["report"]["overall"]["f1"] == pytest.approx(f1_score(gold, pred))
    assert spans["report"][SpanF1.UNSEEN]["support"] == 1 and "z" not in spans["report"]


# ---------------------------------------------------------------- model
def test_every_trainable_parameter_gets_a_gradient(tmp_path):
    cfg = validate(compose(tmp_path))
    names = ["O", "B-X", "I-X", "B-Y", "I-Y"]
    model = build_intent_slot_model(
        cfg.model,
        vocab_size=30,
        pad_id=0,
        num_chars=20,
        num_shapes=9,
        label_names=names,
        intent_names=["i0", "i1", "i2"],
        tag_scheme="BIO",
    )
    lengths = torch.tensor([6, 4, 2])
    tokens = torch.randint(1, 30, (3, 6)) * sequence_mask(torch.zeros(3, 6), lengths)
    chars = torch.randint(1, 20, (3, 6, 5))
    chars[tokens == 0] = 0
    shapes = torch.randint(1, 9, (3, 6)) * (tokens != 0)
    tags = torch.tensor([[1, 2, 0, 3, 4, 0], [0, 1, 2, 0, 0, 0], [3, 0, 0, 0, 0, 0]])
    outputs = model({"tokens": tokens, "lengths": lengths, "chars": chars, "shapes": shapes})
    intent_logits, emissions = outputs["intent_logits"], outputs["emissions"]
    assert intent_logits.shape == (3, 3) and emissions.shape == (3, 6, len(names))
    loss = model.doc_output.loss(intent_logits, torch.tensor([0, 2, 1])) + model.output.loss(
        emissions, tags, sequence_mask(tokens, lengths)
    )
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- training end to end
@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intent_slot")
    cfg = compose(tmp, "trainer.limit_train_batches=10", "data.eval_batch_size=512")
    assert cfg.task.monitor == "val/frame_accuracy"
    return cfg, nlpkit.train(cfg)


def test_builtin_training_writes_joint_metrics(builtin_run):
    cfg, result = builtin_run
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for stage in ("val", "test"):
        for key in ("intent_accuracy", "slot_f1", "frame_accuracy", "slot_precision", "slot_recall"):
            assert 0.0 <= metrics[f"{stage}/{key}"] <= 1.0, f"{stage}/{key}"
        assert metrics[f"{stage}/unseen_intents"] == 0
        assert metrics[f"{stage}/frame_accuracy"] <= metrics[f"{stage}/intent_accuracy"]
    assert {"tokenizer.json", "chars.json", "labels.json", "intents.json", "span_report.json"} <= {
        p.name for p in run_dir.iterdir()
    }


def test_load_predicts_identically_and_reproduces_test_metrics(builtin_run):
    cfg, result = builtin_run
    run_dir = result["run_dir"]
    test = [json.loads(line) for line in Path(cfg.data.test_path).read_text().splitlines()]
    texts = [" ".join(ex["tokens"]) for ex in test]
    first = nlpkit.load(run_dir).predict(texts)
    again = nlpkit.load(run_dir).predict(texts[:50], batch_size=7)  # other batches and padding, fresh load
    assert nlpkit.load(run_dir).predict(texts) == first  # the same call after a fresh load: bit-identical
    # Other batch compositions: identical labels, scores equal to float rounding (GEMM blocking
    # follows the batch shape).
    assert [(p["intent"], p["slots"]) for p in again] == [(p["intent"], p["slots"]) for p in first[:50]]
    for got, want in zip(again, first[:50]):
        assert got["intent_scores"] == pytest.approx(want["intent_scores"], abs=1e-5)
    p = first[0]
    assert set(p) >= {"intent", "intent_scores", "tokens", "slots"}
    assert p["intent"] == max(p["intent_scores"], key=p["intent_scores"].get)
    assert sum(p["intent_scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert all(len(q["slots"]) == len(q["tokens"]) == len(ex["tokens"]) for q, ex in zip(first, test))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    intent_ok = [q["intent"] == ex["intent"] for q, ex in zip(first, test)]
    frame_ok = [ok and q["slots"] == ex["slots"] for ok, q, ex in zip(intent_ok, first, test)]
    assert sum(intent_ok) / len(test) == pytest.approx(metrics["test/intent_accuracy"], abs=1e-6)
    assert sum(frame_ok) / len(test) == pytest.approx(metrics["test/frame_accuracy"], abs=1e-6)
    with pytest.raises(EmptyTextError, match=r"texts\[0\] is empty"):  # one rule for every backend
        nlpkit.load(run_dir).predict([" "])
    # Restoring through nlpkit.evaluate (intent vocabulary from the run dir) gives the same numbers.
    from nlpkit.evaluate import evaluate

    again_metrics = evaluate(run_dir, output=Path(run_dir) / "eval.json")
    for key in ("test/intent_accuracy", "test/slot_f1", "test/frame_accuracy"):
        assert again_metrics[key] == pytest.approx(metrics[key], abs=1e-6), key


def test_parallel_files_with_unseen_test_intent_are_counted(tmp_path):
    train = write_split(tmp_path / "atis" / "train", TRAIN)
    test = write_split(
        tmp_path / "atis" / "test",
        [TRAIN[0], TRAIN[2], ("list ground transport in denver", "O O O O B-city", "atis_ground_service")],
    )
    cfg = compose(
        tmp_path,
        "data=parallel_intent_slot",
        f"data.train_path={train}",
        f"data.val_path={train}",
        f"data.test_path={test}",
        "data.batch_size=4",
    )
    result = nlpkit.train(cfg)
    metrics = result["metrics"]
    assert metrics["test/unseen_intents"] == 1
    assert metrics["val/unseen_intents"] == 0
    assert metrics["test/intent_accuracy"] <= 2 / 3 + 1e-6
    intents = json.loads((Path(result["run_dir"]) / "intents.json").read_text())["labels"]
    assert intents == ["atis_abbreviation", "atis_airfare", "atis_flight", "atis_flight#atis_airfare"]
    predicted = nlpkit.load(result["run_dir"]).predict(["fly to boston"])[0]
    assert predicted["intent"] in intents and len(predicted["slots"]) == 3


def test_parallel_intent_file_problems(tmp_path):
    split = write_split(tmp_path / "train", TRAIN[:3])
    cfg = OmegaConf.merge(
        OmegaConf.structured(get_task("intent_slot").data_schema),
        {"format": "parallel", "train_path": str(split), "val_path": str(split)},
    )
    dm = get_task("intent_slot").datamodule(cfg)
    sentences = dm.read_split(str(split))
    assert [s.intent for s in sentences] == ["atis_flight", "atis_airfare", "atis_flight#atis_airfare"]
    (split / "label").write_text("atis_flight\n\natis_flight\n")
    with pytest.raises(DataError, match=r"seq.in:2: missing intent"):
        get_task("intent_slot").datamodule(cfg).read_split(str(split))
    dm = get_task("intent_slot").datamodule(OmegaConf.merge(cfg, {"on_bad_row": "skip"}))
    assert len(dm.read_split(str(split))) == 2 and dm.policy.total_skipped == 1
    (split / "label").write_text("atis_flight\n")
    with pytest.raises(DataError, match="label has 1 lines but .*seq.in has 3"):
        get_task("intent_slot").datamodule(cfg).read_split(str(split))


def test_tagger_model_without_document_head_is_refused(tmp_path):
    cfg = nlpkit.compose(
        ["task=intent_slot", "model=bilstm_crf_tagger", f"paths.builtin_dir={tmp_path}/builtin"],
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(ConfigError, match="model.pooling must be a component.*model=joint_bilstm"):
        validate(cfg)  # by validation, before any data is read or model built


@pytest.mark.parametrize("name", ["atis", "snips"])
def test_experiments_compose(tmp_path, name):
    cfg = validate(nlpkit.compose([f"experiment={name}"], output_dir=str(tmp_path / "run")))
    assert cfg.task.name == "intent_slot" and cfg.data.format == "parallel"
    assert cfg.data.train_path.endswith(f"{name}_slotgated/train")
    assert cfg.model.name == "joint_bilstm"


class TestIntentSlotContract(TaskCase):
    """``task=intent_slot`` (joint BiLSTM-CRF + self-attention intent head) keeps the contract."""

    overrides = ("task=intent_slot", *JOINT_TINY)
    test_metrics = ("test/frame_accuracy", "test/intent_accuracy", "test/slot_f1")
    label_keys = ("intent", "slots")


class TestIntentSlotComposedIntentsContract(TestIntentSlotContract):
    """The same contract with the opt-in ``ComposedLabelDecoder`` intent head (``a#b`` scored from its
    parts): through training, reload and the exported graph."""

    overrides = (
        *TestIntentSlotContract.overrides,
        "model.doc_decoder._target_=nlpkit.modules.decoder.ComposedLabelDecoder",
    )
