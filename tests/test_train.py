"""Train tiny models for real across task x model x data format; round-trip every model."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

import nlpkit
from nlpkit.data.batching import pad_sequences
from nlpkit.tasks.doc_cls.predictor import DocClassificationPredictor
from tests.conftest import run_module
from tests.task_case import TaskCase

FORMATS = ("builtin", "tsv", "csv", "jsonl", "label_text")
MODELS = ("bilstm", "cnn")


def _builtin_records(builtin_dir: Path, split: str, limit: int) -> list[dict]:
    with open(builtin_dir / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle][:limit]


@pytest.fixture(scope="session")
def format_files(builtin_dir, tmp_path_factory) -> dict[str, list[str]]:
    """The same small dataset written in every supported format, with the overrides that read it."""
    root = tmp_path_factory.mktemp("formats")
    splits = {
        "train": _builtin_records(builtin_dir, "train", 240),
        "test": _builtin_records(builtin_dir, "test", 60),
    }
    overrides: dict[str, list[str]] = {"builtin": []}
    for fmt, delimiter in (("tsv", "\t"), ("csv", ",")):
        for split, records in splits.items():
            with open(root / f"{split}.{fmt}", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, delimiter=delimiter)
                writer.writerow(["id", "utterance", "intent"])
                writer.writerows([[i, r["text"], r["intent"]] for i, r in enumerate(records)])
        overrides[fmt] = [
            f"data={fmt}",
            f"data.train_path={root}/train.{fmt}",
            f"data.test_path={root}/test.{fmt}",
            "data.text_field=utterance",
            "data.label_field=intent",
        ]
    for split, records in splits.items():
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"sentence": r["text"], "y": r["intent"]}) + "\n" for r in records)
        with open(root / f"{split}.lt", "w", encoding="utf-8") as handle:
            handle.writelines(f"{r['intent']} {r['text']}\n" for r in records)
    overrides["jsonl"] = ["data=jsonl", f"data.train_path={root}/train.jsonl", f"data.test_path={root}/test.jsonl",
                          "data.text_field=sentence", "data.label_field=y"]  # fmt: skip
    overrides["label_text"] = [
        "data=label_text",
        f"data.train_path={root}/train.lt",
        f"data.test_path={root}/test.lt",
    ]
    return overrides


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_on_every_format(make_cfg, format_files, model, data_format):
    result = nlpkit.train(make_cfg("task=doc_cls", f"model={model}", *format_files[data_format]))
    metrics = result["metrics"]
    for key in ("val/accuracy", "val/macro_f1", "test/accuracy", "test/macro_f1", "train_seconds"):
        assert key in metrics, key
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    assert metrics["global_steps"] == 3  # debug=fast: 3 training batches


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.representation.pooling=max"],
        ["model.representation.pooling=mean"],
        ["model.representation.pooling=last"],
        ["model.representation.attention_hops=2"],
        ["optim=adamw", "optim.scheduler=cosine", "optim.warmup_steps=2"],
        ["optim=sgd", "optim.scheduler=linear"],
        ["decoder=mlp", "model.decoder.hidden_dims=[]", "model.decoder.activation=tanh"],
        ["decoder=composed"],  # reads the label names doc_cls offers its decoder
        ["model=cnn", "representation=bilstm"],  # a preset with one component swapped
        ["representation=bag", "model.representation.hidden_dim=8"],  # the README's worked example
    ],
    ids=lambda o: " ".join(o),
)
def test_component_variants_train(make_cfg, overrides):
    result = nlpkit.train(make_cfg(*overrides))
    assert "test/accuracy" in result["metrics"]


def test_run_directory_contents(make_cfg):
    result = nlpkit.train(make_cfg())
    run_dir = Path(result["run_dir"])
    for name in (
        "metrics.json",
        "config.yaml",
        "tokenizer.json",
        "labels.json",
        "run.json",
        "confusion_matrix.png",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert all(isinstance(v, (int, float)) for v in metrics.values()), "metrics.json must be flat numbers"
    assert not list(run_dir.rglob("*.tmp")), "no temporary files left behind"


def _in_memory_predictions(result, texts):
    """Predictions straight from the trained model object, before anything is reloaded."""
    run_dir = Path(result["run_dir"])
    from nlpkit.data.featurizers import SubwordFeaturizer
    from nlpkit.data.labels import LabelVocab

    predictor = DocClassificationPredictor(result["model"], SubwordFeaturizer.load(run_dir),
                                           LabelVocab.load(run_dir / "labels.json"))  # fmt: skip
    return predictor.scores(texts)


@pytest.mark.parametrize("model", MODELS)
def test_train_save_load_identical_predictions(make_cfg, builtin_dir, model):
    result = nlpkit.train(make_cfg(f"model={model}", "trainer.limit_train_batches=10"))
    texts = [r["text"] for r in _builtin_records(builtin_dir, "test", 50)] + [
        "",
        "words never seen zyxw",
        "!!!",
    ]
    before = _in_memory_predictions(result, texts)
    predictor = nlpkit.load(result["run_dir"])
    after = predictor.scores(texts)
    assert torch.equal(before, after)
    # Batch composition must not change any result (padding invariance).
    one_by_one = torch.cat([predictor.scores([t]) for t in texts])
    torch.testing.assert_close(one_by_one, after, rtol=0, atol=1e-6)
    predictions = predictor.predict(texts[:3])
    assert set(predictions[0]) == {"label", "scores"}
    assert predictions[0]["label"] in predictions[0]["scores"]
    assert abs(sum(predictions[0]["scores"].values()) - 1.0) < 1e-5


def test_reloaded_test_accuracy_matches_metrics_json(make_cfg, builtin_dir):
    """metrics.json's test/accuracy equals accuracy hand-computed from the reloaded predictor."""
    result = nlpkit.train(make_cfg("trainer.limit_train_batches=5", "trainer.limit_test_batches=null"))
    records = _builtin_records(builtin_dir, "test", 10_000)
    predictions = nlpkit.load(result["run_dir"]).predict([r["text"] for r in records])
    correct = sum(p["label"] == r["intent"] for p, r in zip(predictions, records))
    assert result["metrics"]["test/accuracy"] == pytest.approx(correct / len(records), abs=1e-6)


def test_make_train_learns_the_builtin_data_well_but_not_perfectly(builtin_dir, tmp_path):
    """``make train`` as a user runs it (default BiLSTM, callbacks, early stopping): far above the
    majority class, below the ceiling that label noise and ambiguous phrasings leave, and clearly
    worse on the phrasings it never saw in training than on those it did."""
    run_dir = tmp_path / "make_train"
    args = ["task=doc_cls", "model=bilstm", f"paths.builtin_dir={builtin_dir}", f"hydra.run.dir={run_dir}"]
    run_module("nlpkit.train", args, timeout=900)
    test_accuracy = json.loads((run_dir / "metrics.json").read_text())["test/accuracy"]
    records = _builtin_records(builtin_dir, "test", 10_000)
    majority = Counter(r["intent"] for r in records).most_common(1)[0][1] / len(records)
    assert majority + 0.6 < test_accuracy < 0.95
    predictions = nlpkit.load(run_dir).predict([r["text"] for r in records])

    def accuracy_on(kind: str) -> float:
        pairs = [(p, r) for p, r in zip(predictions, records) if r["kind"] == kind]
        return sum(p["label"] == r["intent"] for p, r in pairs) / len(pairs)

    assert accuracy_on("held_out") < accuracy_on("plain") - 0.1


@pytest.mark.parametrize("model", MODELS)
def test_every_trainable_parameter_gets_a_gradient(make_cfg, model):
    from nlpkit.tasks import get_task

    cfg = make_cfg(f"model={model}")
    datamodule, module = get_task("doc_cls").build(cfg)
    module.train()
    batch = next(iter(datamodule.train_dataloader()))
    module._step(batch, "train").backward()
    for name, param in module.model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name} got no gradient"
            assert param.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_same_seed_same_metrics(make_cfg):
    first = nlpkit.train(make_cfg(run_name="a"))["metrics"]
    second = nlpkit.train(make_cfg(run_name="b"))["metrics"]
    for key in ("val/accuracy", "val/loss", "test/loss"):
        assert first[key] == second[key], key


def test_multilabel_output(make_cfg, tmp_path):
    rows = []
    for i in range(120):
        labels = ["music"] if i % 3 == 0 else (["weather"] if i % 3 == 1 else ["music", "weather"])
        words = {"music": "play a song", "weather": "is it raining"}
        rows.append(
            json.dumps(
                {"text": " and ".join(words[lab] for lab in labels) + f" {i % 7}", "tags": ",".join(labels)}
            )
        )
    (tmp_path / "ml.jsonl").write_text("\n".join(rows) + "\n")
    cfg = make_cfg("data=jsonl", f"data.train_path={tmp_path}/ml.jsonl", f"data.test_path={tmp_path}/ml.jsonl",
                   "data.label_field=tags", "data.label_delimiter=','", "output=multilabel",
                   "trainer.limit_train_batches=null", "trainer.max_epochs=3")  # fmt: skip
    result = nlpkit.train(cfg)
    assert "test/macro_f1" in result["metrics"]
    predictor = nlpkit.load(result["run_dir"])
    out = predictor.predict(["play a song and is it raining 3"])[0]
    assert set(out) == {"labels", "scores"} and set(out["scores"]) == {"music", "weather"}


def test_pretrained_embeddings_are_loaded(make_cfg, tmp_path):
    vectors = tmp_path / "vectors.txt"
    dim = 16
    vectors.write_text(
        "3 16\n" + "".join(f"{w} " + " ".join(["0.5"] * dim) + "\n" for w in ("wake", "play", "PARIS"))
    )
    cfg = make_cfg(f"model.embedding.pretrained_path={vectors}", "model.embedding.freeze=true")
    from nlpkit.tasks import get_task

    datamodule, module = get_task("doc_cls").build(cfg)
    embedding = module.model.embedding
    assert 0 < embedding.coverage < 1
    row = embedding.embedding.weight[datamodule.featurizer.vocab.index("paris")]
    assert torch.allclose(row, torch.full((dim,), 0.5)), "lowercased lookup falls back to the file's casing"
    assert not embedding.embedding.weight.requires_grad
    result = nlpkit.train(cfg)  # and the run reloads without the vectors file
    vectors.unlink()
    assert nlpkit.load(result["run_dir"]).predict(["wake me up"])


def test_pad_sequences_shapes():
    tokens, lengths = pad_sequences([torch.tensor([1, 2, 3]), torch.tensor([4])], pad_value=0)
    assert tokens.tolist() == [[1, 2, 3], [4, 0, 0]] and lengths.tolist() == [3, 1]


class TestDocClassificationContract(TaskCase):
    """``task=doc_cls`` (the default model, BiLSTM + self-attention, on the built-in data) keeps the
    contract of ``tests/task_case.py``."""

    overrides = (
        "task=doc_cls",
        "model.embedding.embed_dim=16",
        "model.representation.hidden_dim=16",
        "model.representation.attention_dim=8",
        "model.decoder.hidden_dims=[8]",
    )
    test_metrics = ("test/accuracy", "test/macro_f1")
    label_keys = ("label",)
