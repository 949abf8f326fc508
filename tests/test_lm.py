"""task=lm (nlpkit/tasks/lm/): perplexity by hand, stream state carried and sentence state reset,
and the shared task contract (train -> save -> load -> same scores -> export parity)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

import nlpkit
from nlpkit.config import validate
from nlpkit.errors import ConfigError
from nlpkit.registry import get_task
from tests.conftest import write_lines
from tests.task_case import TaskCase

TINY = (
    "model.embedding.embed_dim=12",
    "model.representation.hidden_dim=12",
    "model.representation.dropout=0.0",
)
QUIET = ("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=csv")
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", "and", "then", "slept"]


def _text(tmp_path: Path, seed: int = 0) -> dict[str, Path]:
    """Three small plain-text splits (one blank line in each: a stream counts it as one <eos>)."""
    rng = random.Random(seed)
    files = {}
    for split, size in (("train", 60), ("valid", 12), ("test", 9)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(size)]
        lines.insert(3, "")
        files[split] = write_lines(tmp_path / f"{split}.txt", lines)
    return files


def _train(tmp_path: Path, *overrides: str) -> dict:
    files = _text(tmp_path)
    cfg = nlpkit.compose(
        [
            "task=lm",
            "data.format=text",
            f"data.train_path={files['train']}",
            f"data.val_path={files['valid']}",
            f"data.test_path={files['test']}",
            *TINY,
            *QUIET,
            "trainer.max_epochs=2",
            "data.batch_size=4",
            "data.bptt=5",
            *overrides,
        ],  # fmt: skip
        output_dir=str(tmp_path / "run"),
    )
    return {**nlpkit.train(cfg), "cfg": cfg, "files": files}


def _stream_log_probs(model, featurizer, path: Path) -> torch.Tensor:
    """By hand: the whole test file as one sequence (<eos>, then each line's words and <eos>), one
    LSTM pass from a zero state, the log-probability of every next token."""
    eos = featurizer.tokenizer.tokenizer.token_to_id("<eos>")
    ids = [eos]
    for line in path.read_text().splitlines():
        ids += featurizer.words.encode(line.split()) + [eos]
    ids = torch.tensor(ids)
    with torch.no_grad():
        states, _ = model.representation.lstm(model.embedding(ids[:-1].unsqueeze(0)))  # [1, N, H]
        full = model.output.log_probs(states[0])  # [N, V]
    return full.gather(1, ids[1:].unsqueeze(1)).squeeze(1)  # [N]


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    # evaluation as one row: the whole split is one sequence, computable by hand in one LSTM pass
    return _train(tmp_path_factory.mktemp("lm_stream"), "data.eval_batch_size=1")


def test_test_perplexity_is_exp_of_the_mean_nll_over_every_token(stream_run):
    task = get_task("lm")
    cfg = validate(stream_run["cfg"].copy())
    dm, module = task.restore(cfg, Path(stream_run["run_dir"]))
    log_probs = _stream_log_probs(module.model, dm.featurizer, stream_run["files"]["test"])
    lines = stream_run["files"]["test"].read_text().splitlines()
    assert len(log_probs) == sum(len(line.split()) + 1 for line in lines)  # every word, every <eos>
    by_hand = math.exp(-log_probs.double().mean().item())
    assert math.isclose(stream_run["metrics"]["test/perplexity"], by_hand, rel_tol=1e-5)


def test_stream_evaluation_carries_the_state_across_batches(stream_run):
    """One row in windows of 5 gives the one-sequence log-probabilities only if each window starts from
    the state the previous one ended in; from a zero state per window they differ."""
    task = get_task("lm")
    cfg = validate(stream_run["cfg"].copy())
    dm, module = task.restore(cfg, Path(stream_run["run_dir"]))
    dm.load()
    single = _stream_log_probs(module.model, dm.featurizer, stream_run["files"]["test"])
    carried, reset = [], []
    state = None
    with torch.no_grad():
        for batch in dm.test_dataloader():
            out = module.model(batch, state)
            state = out["state"]
            carried.append(out["log_probs"][batch["mask"]])
            reset.append(module.model(batch, None)["log_probs"][batch["mask"]])
    assert len(carried) > 5
    assert torch.allclose(torch.cat(carried), single, atol=1e-5)
    assert not torch.allclose(torch.cat(reset), single, atol=1e-3)


def test_training_carries_a_detached_state_and_sentence_mode_starts_from_zero(stream_run, tmp_path):
    task = get_task("lm")
    cfg = validate(stream_run["cfg"].copy())
    dm, module = task.build(cfg)
    module.train()
    loader = iter(dm.train_dataloader())
    module._step(next(loader), "train")
    state = module._state["train"]
    assert state is not None and not state[0].requires_grad  # carried, cut from the last graph
    module.reset_metrics("train")
    assert module._state["train"] is None  # a new epoch starts the stream from a zero state

    sentence = _sentence_cfg(stream_run["cfg"])
    dm2, module2 = task.build(sentence)
    module2.eval()
    batches = list(dm2.val_dataloader())
    with torch.no_grad():
        first = module2(batches[1])["log_probs"]
        module2(batches[0])
        again = module2(batches[1])["log_probs"]
    assert torch.equal(first, again) and module2._state.get("val") is None


def _sentence_cfg(cfg):
    from omegaconf import open_dict

    cfg = validate(cfg.copy())
    with open_dict(cfg):
        cfg.data.mode = "sentence"
    return cfg


def test_sentence_mode_perplexity_equals_the_predictors_sentence_scores(tmp_path):
    run = _train(tmp_path, "data.mode=sentence", "data.eval_batch_size=4")
    lines = [line for line in run["files"]["test"].read_text().splitlines() if line.strip()]
    scores = nlpkit.load(run["run_dir"]).predict(lines)
    total = sum(s["log_prob"] for s in scores)
    tokens = sum(len(line.split()) + 1 for line in lines)
    assert math.isclose(run["metrics"]["test/perplexity"], math.exp(-total / tokens), rel_tol=1e-4)
    for line, score in zip(lines, scores):
        assert len(score["token_log_probs"]) == len(line.split())
        assert score["log_prob"] < sum(score["token_log_probs"]) + 1e-6  # plus log p(<eos>) <= 0


def test_tied_embeddings_share_one_matrix_and_adaptive_softmax_refuses_to_tie(tmp_path):
    run = _train(
        tmp_path / "tied", "model.tie_weights=true", "model.output.cutoffs=[]", "trainer.max_epochs=1"
    )
    for model in (run["model"], nlpkit.load(run["run_dir"]).model):  # trained, and reloaded
        assert model.output.linear.weight is model.embedding.embedding.weight
    assert run["metrics"]["val/tokens_per_second"] > 0
    with pytest.raises(ConfigError, match="tied embeddings need a full softmax"):
        _train(tmp_path / "bad", "model.tie_weights=true", "model.output.cutoffs=[4]")


class TestLMContract(TaskCase):
    """Built-in utterances as text; sentence scores through every entry point and the export."""

    overrides = ("task=lm", *TINY)
    test_metrics = ("test/perplexity",)
    value_keys = ("log_prob",)

    def test_the_exported_file_and_the_server_give_every_words_log_probability(self, run, tmp_path):
        import httpx

        from nlpkit.export import export_run
        from nlpkit.serving.onnx_predictor import OnnxPredictor
        from tests.test_serve import serve

        path = Path(run["run_dir"]) / "export" / "model.onnx"
        if not path.is_file():  # the contract's export test may have written it already
            assert export_run(run["run_dir"])["passed"]
        texts = list(self.texts)
        want = nlpkit.load(run["run_dir"]).predict(texts)
        for served in (OnnxPredictor(path).predict(texts), None):
            if served is None:
                with serve(tmp_path, path) as server:
                    response = httpx.post(f"{server.url}/predict", json={"texts": texts})
                assert response.status_code == 200, response.text
                served = response.json()["predictions"]
            for got, expected in zip(served, want):
                assert got["tokens"] == expected["tokens"]
                assert len(got["token_log_probs"]) == len(expected["token_log_probs"]) > 0
                for a, b in zip(got["token_log_probs"], expected["token_log_probs"]):
                    assert math.isclose(a, b, abs_tol=1e-4)
                assert math.isclose(got["log_prob"], expected["log_prob"], abs_tol=1e-4)


def test_lm_and_doc_cls_multitask_share_the_encoder_trains_and_reloads(tmp_path, builtin_dir):
    cfg = nlpkit.compose(
        [
            f"paths.builtin_dir={builtin_dir}",
            "task=multitask",
            "multitask=builtin_lm",
            "task.monitor=val/intents/accuracy",
            "task.monitor_mode=max",
            *(
                f"task.tasks.{name}.{knob}"
                for name in ("intents", "lm")
                for knob in (
                    "model.embedding.embed_dim=12",
                    "model.representation.hidden_dim=12",
                )
            ),
            "task.tasks.intents.model.pooling.attention_dim=8",
            "task.tasks.intents.model.decoder.hidden_dims=[8]",
            "debug=fast",
            "logger=csv",
        ],  # fmt: skip
        output_dir=str(tmp_path / "run"),
    )
    result = nlpkit.train(cfg)
    metrics = result["metrics"]
    assert math.isfinite(metrics["test/lm/perplexity"]) and metrics["test/lm/tokens_per_second"] > 0
    assert "test/mean_target" not in metrics  # a mean of an accuracy and a perplexity means nothing
    models = result["model"]
    assert models["lm"].representation is models["intents"].representation  # one LSTM
    assert models["lm"].embedding is models["intents"].embedding
    reloaded = nlpkit.load(result["run_dir"])
    scores = reloaded.predict(["play some jazz"], task="lm")[0]
    assert scores["tokens"] == ["play", "some", "jazz"] and scores["log_prob"] < 0
    assert "label" in reloaded.predict(["play some jazz"], task="intents")[0]


def test_a_multitask_lm_run_must_not_select_on_the_mean_of_accuracy_and_perplexity(tmp_path, builtin_dir):
    """``val/mean_target`` (the default monitor, maximized) would pick the epoch with the worst
    perplexity: validation refuses it and names a sub-task metric to select on."""
    from nlpkit.config import validate
    from nlpkit.errors import ConfigError

    cfg = nlpkit.compose(["task=multitask", "multitask=builtin_lm"], output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"task.tasks.lm.metric=perplexity is lower-is-better.*task.monitor=val/intents/accuracy"):  # fmt: skip
        validate(cfg)


def test_bad_input_names_the_file_and_line(tmp_path):
    from nlpkit.errors import DataError
    from nlpkit.tasks.lm.data import read_lines

    bad = write_lines(tmp_path / "bad.jsonl", ['{"text": "fine"}', "not json"])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not a JSON object with a 'text' field"):
        read_lines(str(bad), "builtin")
    with pytest.raises(DataError, match=r"missing\.txt: file not found"):
        read_lines(str(tmp_path / "missing.txt"), "text")
    assert read_lines(str(write_lines(tmp_path / "t.txt", ["a b", "", "c"])), "text", keep_blank=True) == [
        ["a", "b"],
        [],
        ["c"],
    ]


def test_token_value_head_builds_checks_and_serves_one_float_per_token():
    """``TokenValueHead``: ``[B, T]`` floats -> tokens + per-token values (0 at padding) in the graph;
    its check catches other tokens or a value off by more than the tolerance; it serves as
    ``token_values``. A relative ``ValueHead`` forgives float32 rounding of a long sentence's sum."""
    import json

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from nlpkit.errors import ArtifactError
    from nlpkit.export.front_ends import FrontEndValues
    from nlpkit.export.graph import MODEL_PREFIX
    from nlpkit.export.heads import TokenValueHead, ValueHead
    from nlpkit.export.text_graph import OPSET, GraphBuilder
    from nlpkit.serving.heads import check_graph_outputs, parse_heads

    head = TokenValueHead(network="lp", output="token_log_probs", noun="log-probability")
    b = GraphBuilder("nlpkit/")
    head.build(b, FrontEndValues(tokens="tok", mask="mask"))
    inputs = [
        helper.make_tensor_value_info(MODEL_PREFIX + "lp", TensorProto.FLOAT, ["batch", "t"]),
        helper.make_tensor_value_info("tok", TensorProto.STRING, ["batch", "t"]),
        helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "t"]),
    ]
    graph = helper.make_graph(b.nodes, "tv", inputs, head.value_infos(), initializer=b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        MODEL_PREFIX + "lp": np.array([[-1.0, -2.0], [-3.0, -9.0]], dtype=np.float32),
        "tok": np.array([["a", "b"], ["c", ""]], dtype=object),
        "mask": np.array([[True, True], [True, False]]),
    }
    rows = head.rows(dict(zip(head.outputs, session.run(head.outputs, feeds))))
    assert rows == [
        {"tokens": ["a", "b"], "token_log_probs": [-1.0, -2.0]},
        {"tokens": ["c"], "token_log_probs": [-3.0]},
    ]

    checks = head.new_checks(3, [1])
    wanted = [
        {"tokens": ["a", "b"], "token_log_probs": [-1.00001, -2.0]},  # within tolerance
        {"tokens": ["x"], "token_log_probs": [-3.0]},  # other tokens
        {"tokens": ["c"], "token_log_probs": [-3.1]},  # off
    ]
    for want, have in zip(map(head.from_prediction, wanted), [rows[0], rows[1], rows[1]]):
        head.compare(want, have, {"text": "t"}, checks)
    assert checks["token_log_probs"].result()["mismatches"] == 2

    def problem(field: str, what: str) -> ArtifactError:
        return ArtifactError(f"metadata {field!r} {what}")

    (served,) = parse_heads(json.loads(json.dumps([head.serving()])), problem)
    assert served.kind == "token_values" and served.describe() == head.serving()
    graph_outputs = {"tokens": ("tensor(string)", 2), "token_log_probs": ("tensor(float)", 2)}
    assert check_graph_outputs([served], graph_outputs, "metadata 'heads'") is None
    assert served.shape({"tokens": feeds["tok"], "values": feeds[MODEL_PREFIX + "lp"]})[1] == {
        "tokens": ["c"],
        "token_log_probs": [-3.0],
    }

    for relative, mismatches in ((False, 1), (True, 0)):
        sentence = ValueHead(network="s", output="log_prob", relative=relative)
        checks = sentence.new_checks(1, [1])
        sentence.compare({"log_prob": -1964.5349}, {"log_prob": -1964.5347}, {"text": "t"}, checks)
        assert checks["log_prob"].result()["mismatches"] == mismatches
