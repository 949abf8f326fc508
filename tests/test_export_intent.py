"""ONNX export of ``task=doc_cls featurizer=word`` (intent detection over word-level features, what
``task=intent`` was) and of each sub-task of a ``task=multitask`` run (``task=NAME``): the parity gate,
the file's outputs and metadata, torch-free serving, and the ``task=`` errors."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import nlpkit
from nlpkit.export import ExportError, export_run
from nlpkit.export.__main__ import main as export_cli
from nlpkit.serving import OnnxPredictor
from tests.conftest import JOINT_TINY, WORD_TINY, data_overrides, run_without_torch

# Trained enough (seconds on one core) that the exported models predict several intents and real slot
# spans, so parity covers more than one constant answer.
STEPS = [
    "logger=csv",
    "debug=fast",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=40",
    "optim.lr=0.03",
]
TRAIN = [*JOINT_TINY, *STEPS]
SUBTASKS = {"intents": "doc_cls", "slots": "tagging"}  # task=multitask's built-in sub-tasks and their kinds
# task=doc_cls over word + character + casing features: task=intent's model (model=pooled_bilstm)
WORD_DOC = [
    "task=doc_cls",
    "featurizer=word",
    "model=pooled_bilstm",
    *WORD_TINY,
    "model.pooling.attention_dim=8",
    "model.decoder.hidden_dims=[8]",
    *STEPS,
]
# Blank texts are refused by OnnxPredictor (EmptyTextError); the graph's own answer to them is tested
# on the session directly.
TEXTS = [
    "wake me up at 7 am tomorrow",
    "Play some JAZZ by Miles Davis",
    "what is the weather in paris",
    "Ünïcode İstanbul ÉCOLE straße 😀",
]


def read_test_split(data: Path) -> tuple[list[str], list[dict]]:
    examples = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    return [" ".join(ex["tokens"]) for ex in examples], examples


@pytest.fixture(scope="module")
def intent_run(tmp_path_factory, plain_data) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("export_intent") / "run"
    cfg = nlpkit.compose([*WORD_DOC, *data_overrides(plain_data, "data")], output_dir=str(run_dir))
    nlpkit.train(cfg)
    return run_dir, export_run(run_dir)


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, plain_data) -> tuple[Path, dict[str, dict]]:
    """``task=multitask`` (intent-only + slot-only sub-tasks over a shared embedding and BiLSTM),
    trained once; each sub-task exported on its own."""
    run_dir = tmp_path_factory.mktemp("export_multitask") / "run"
    data = [o for name in SUBTASKS for o in data_overrides(plain_data, f"task.tasks.{name}.data")]
    nlpkit.train(nlpkit.compose(["task=multitask", *TRAIN, *data], output_dir=str(run_dir)))
    return run_dir, {name: export_run(run_dir, task=name) for name in SUBTASKS}


def _meta(path: Path) -> tuple[onnx.ModelProto, dict[str, str]]:
    model = onnx.load(path)
    return model, {p.key: p.value for p in model.metadata_props}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_word_doc_cls_export_has_doc_cls_outputs_and_passes_the_gate(intent_run, plain_data):
    run_dir, report = intent_run
    assert report["passed"] is True and report["task"] == "doc_cls"
    assert set(report["checks"]) == {"features_all_codepoints", "features", "labels", "scores"}
    assert all(check["passed"] for check in report["checks"].values())
    assert report["checks"]["features_all_codepoints"]["tokens"] > 1_000_000
    for name in ("features", "labels", "scores"):
        assert report["checks"][name]["batch_sizes"] == [1, 64]
    assert report["checks"]["scores"]["max_abs_diff"] <= 1e-4
    model, meta = _meta(run_dir / "export" / "model.onnx")
    assert [i.name for i in model.graph.input] == ["text"]
    # the sub-word doc_cls export's outputs and metadata: served like any doc_cls model
    assert [o.name for o in model.graph.output] == ["label", "scores"]
    intents = json.loads((run_dir / "labels.json").read_text())["labels"]
    assert meta["task"] == "doc_cls" and meta["featurizer"] == "word"
    assert "subtask" not in meta and "decoding" not in meta and "intents" not in meta
    assert json.loads(meta["labels"]) == intents and json.loads(meta["multilabel"]) is False
    assert meta["chars_sha256"] == _sha256(run_dir / "chars.json")
    assert set(json.loads(meta["outputs"])) == {"label", "scores"}
    # the test split's accuracy, from the ONNX file, is the PyTorch predictor's
    texts, examples = read_test_split(plain_data)
    torch_intents = [p["label"] for p in nlpkit.load(run_dir).predict(texts)]
    accuracy = sum(p == ex["intent"] for p, ex in zip(torch_intents, examples)) / len(examples)
    assert report["metrics"]["test_onnx"] == {"accuracy": pytest.approx(accuracy, abs=1e-9)}
    assert len(set(torch_intents)) >= 2  # parity over varied answers, not one constant intent

    from nlpkit.export import graph as G

    intent, scores = G.session(model).run(None, {"text": np.array(["", "play jazz", " \t"], dtype=object)})
    assert intent.tolist()[0] == intent.tolist()[2] == "" and intent[1] in intents
    assert scores.shape == (3, len(intents)) and not scores[[0, 2]].any()
    assert scores[1].sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", list(SUBTASKS))
def test_each_multitask_sub_task_exports_as_a_standalone_file(multitask_run, plain_data, name):
    run_dir, reports = multitask_run
    report, kind = reports[name], SUBTASKS[name]
    assert report["passed"] is True and report["task"] == kind and report["subtask"] == name
    expected = {"features_all_codepoints", "features"} | (
        {"labels", "scores"} if kind == "doc_cls" else {"tags"}
    )
    assert set(report["checks"]) == expected and all(c["passed"] for c in report["checks"].values())
    export_dir = run_dir / "export" / name  # one directory per sub-task: the two do not overwrite
    assert sorted(p.name for p in export_dir.iterdir()) == ["export_report.json", "model.onnx"]
    assert not (run_dir / "export" / "model.onnx").exists()
    model, meta = _meta(export_dir / "model.onnx")
    outputs = ["label", "scores"] if kind == "doc_cls" else ["tokens", "tags"]
    assert [o.name for o in model.graph.output] == outputs
    assert meta["task"] == kind and meta["subtask"] == name
    vocab_dir = run_dir / "tasks" / name  # the sub-task's own vocabularies (no tokenizer.json at the top)
    assert meta["tokenizer_sha256"] == _sha256(vocab_dir / "tokenizer.json")
    assert meta["chars_sha256"] == _sha256(vocab_dir / "chars.json")
    assert meta["weights_file"] == "checkpoints/best.ckpt"
    texts, examples = read_test_split(plain_data)
    predictions = nlpkit.load(run_dir).predict(texts, task=name)
    metrics = report["metrics"]["test_onnx"]
    if kind == "doc_cls":
        assert json.loads(meta["labels"]) == json.loads((vocab_dir / "labels.json").read_text())["labels"]
        right = sum(p["label"] == ex["intent"] for p, ex in zip(predictions, examples))
        assert metrics["accuracy"] == pytest.approx(right / len(examples), abs=1e-9)
        assert len({p["label"] for p in predictions}) >= 2
    else:
        assert json.loads(meta["labels"]) == json.loads((vocab_dir / "labels.json").read_text())["labels"]
        right = sum(a == b for p, ex in zip(predictions, examples) for a, b in zip(p["tags"], ex["slots"]))
        assert metrics["token_accuracy"] == pytest.approx(right / sum(len(ex["slots"]) for ex in examples))
        assert metrics["span_f1"] > 0.2  # real B-/I- decisions are part of the parity


def test_onnx_files_serve_without_torch_like_the_pytorch_predictors(intent_run, multitask_run, tmp_path):
    """``OnnxPredictor`` on the three files, and the HTTP app on the intent file, in a torch-blocked process."""
    intent_dir, _ = intent_run
    multitask_dir, _ = multitask_run
    files = {
        "intent": intent_dir / "export" / "model.onnx",
        **{name: multitask_dir / "export" / name / "model.onnx" for name in SUBTASKS},
    }
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        import httpx
        from nlpkit.serving import OnnxPredictor
        from nlpkit.serving.app import create_app
        from nlpkit.serving.config import ServeConfig

        files, texts = {json.dumps({k: str(v) for k, v in files.items()})}, {TEXTS!r}
        out = {{k: OnnxPredictor(v, threads=1).predict(texts, batch_size=4) for k, v in files.items()}}

        async def serve():
            app = create_app(ServeConfig(model=files["intent"], max_wait_ms=1))
            async with app.api.router.lifespan_context(app.api):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                    answer = await client.post("/predict", json={{"texts": texts}})
                    meta = await client.get("/metadata")
                    schema = await client.get("/openapi.json")
            return answer.json()["predictions"], meta.json(), sorted(schema.json()["components"]["schemas"])

        out["served"], out["metadata"], out["schemas"] = asyncio.run(serve())
        assert "torch" not in sys.modules
        print(json.dumps(out))
        """
    )
    got = run_without_torch(script, tmp_path)

    def same(onnx_out: list[dict], torch_out: list[dict]) -> None:
        for have, want in zip(onnx_out, torch_out, strict=True):
            have, want = dict(have), dict(want)
            scores, want_scores = have.pop("scores", {}), want.pop("scores", {})
            assert have == want
            assert scores.keys() == want_scores.keys()
            assert all(abs(scores[k] - want_scores[k]) < 1e-4 for k in scores)

    same(got["intent"], nlpkit.load(intent_dir).predict(TEXTS))
    multitask = nlpkit.load(multitask_dir)
    for name in SUBTASKS:
        same(got[name], multitask.predict(TEXTS, task=name))
    assert set(got["intent"][0]) == {"label", "scores"}
    same(got["served"], got["intent"])
    assert got["metadata"]["task"] == "doc_cls" and not got["metadata"]["multilabel"]
    assert got["metadata"]["labels"] == json.loads((intent_dir / "labels.json").read_text())["labels"]
    assert "DocClsPrediction" in got["schemas"]


def test_task_key_errors_name_what_to_do(intent_run, multitask_run, capsys):
    intent_dir, _ = intent_run
    multitask_dir, _ = multitask_run
    with pytest.raises(
        ExportError, match=r"is a multi-task run: .*task=NAME \(its sub-tasks: intents, slots\)"
    ):
        export_run(multitask_dir)
    with pytest.raises(ExportError, match=r"has no sub-task 'atis'.*its sub-tasks: intents, slots"):
        export_run(multitask_dir, task="atis")
    with pytest.raises(ExportError, match=r"is a task=doc_cls run: export it without task="):
        export_run(intent_dir, task="intents")
    # the CLI: the same messages, exit status 1, nothing written
    assert export_cli([f"run_dir={multitask_dir}"]) == 1
    assert "its sub-tasks: intents, slots" in capsys.readouterr().err
    assert export_cli([f"run_dir={intent_dir}", "task=intents"]) == 1
    assert "without task=" in capsys.readouterr().err
    assert not (multitask_dir / "export" / "model.onnx").exists()
    assert sorted(p.name for p in (multitask_dir / "export").iterdir()) == list(SUBTASKS)
    # the run itself is not one model: OnnxPredictor names the sub-task files; a sub-task's directory loads
    with pytest.raises(FileNotFoundError, match=r"sub-task exports are .*export/intents/model\.onnx"):
        OnnxPredictor(multitask_dir)
    assert OnnxPredictor(multitask_dir / "export" / "slots").task == "tagging"
