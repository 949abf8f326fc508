"""task=pair and task=ranking (nlpkit/tasks/pair/, nlpkit/tasks/ranking/): the task contract, metrics
against hand computation, bad input, and the two exported files (model.onnx with two string inputs,
embedding.onnx) served by OnnxPredictor, the HTTP app and nlpkit.predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import nlpkit
from nlpkit.errors import ArtifactError, ConfigError, DataError
from nlpkit.tasks.ranking.metrics import RankingMetrics, query_ap_rr
from nlpkit.tasks.ranking.module import listwise_loss, pairwise_loss
from tests.conftest import write_lines
from tests.task_case import TaskCase, assert_same_predictions

TINY = ("model.embedding.embed_dim=16", "model.decoder.hidden_dims=[8]")
BILSTM = (
    "model.representation.hidden_dim=8",
    "model.representation.attention_dim=8",
    "model.representation.num_layers=1",
)
PAIRS = (
    ("wake me up at seven", "set an alarm for 7 am"),
    (
        "play some jazz",
        "what is the weather like in paris tomorrow morning and will it rain in the afternoon",
    ),
    ("remind me to call mom", "remind me to buy milk"),
)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_test_path(run) -> Path:
    return Path(str(run["cfg"].data.test_path).replace("${paths.builtin_dir}", ""))


def _export_dir(run) -> Path:
    return Path(run["run_dir"]) / "export"


class PairExportCase(TaskCase):
    """The export of a pair or ranking run, once per class (``exported``): both files written behind
    their gates, served by ``OnnxPredictor`` with the PyTorch predictor's answers."""

    #: the two string inputs the exported model must declare
    inputs: tuple[str, str] = ("text_a", "text_b")
    #: the embedding file's ``tower`` metadata
    tower = "shared"
    quantize = False

    @pytest.fixture(scope="class")
    def exported(self, run) -> dict:
        from nlpkit.export import export_run

        return export_run(run["run_dir"], quantize=self.quantize)

    def test_export_passes_the_gate_and_serves_the_same_labels(self, run, exported):
        from nlpkit.serving import OnnxPredictor

        assert exported["passed"]
        assert {"model.onnx", "embedding.onnx"} <= set(exported["files_written"])
        checks = exported["checks"]
        assert {"tokenizer_all_codepoints", "token_ids", "embedding/embedding"} <= set(checks)
        assert all(check["passed"] for check in checks.values())
        assert exported["parity_data"]["edge_cases"] > 10  # edge-case pairs, checked at batch 1 and 64
        served = OnnxPredictor(_export_dir(run) / "model.onnx")
        assert served.inputs == list(self.inputs)
        assert json.loads(served.metadata["inputs"]) == list(self.inputs)
        pairs = list(self.texts)
        assert_same_predictions(served.predict(pairs), nlpkit.load(run["run_dir"]).predict(pairs), tol=1e-4)
        assert_same_predictions(
            served.predict(pairs[:1], batch_size=1), nlpkit.load(run["run_dir"]).predict(pairs[:1]), tol=1e-4
        )
        with pytest.raises(TypeError, match=r"pairs\[0\] must be two texts"):
            served.predict(["one text"])
        with pytest.raises(DataError, match=r"pairs\[0\]\[1\] is empty"):
            served.predict([("a", " ")])

    def test_embedding_file_gives_the_towers_vectors(self, run, exported):
        from nlpkit.serving import OnnxPredictor

        texts = [b for _, b in self.texts] + ["Ünïcode İstanbul", "x"]
        embedding = OnnxPredictor(_export_dir(run) / "embedding.onnx")
        assert embedding.metadata["tower"] == self.tower and embedding.inputs == ["text"]
        want = nlpkit.load(run["run_dir"]).embed(texts)
        got = embedding.embed(texts)
        assert got.shape == want.shape == (len(texts), exported["embedding"]["vectors"]["dim"])
        assert np.abs(got - want).max() < 1e-4
        assert np.abs(np.array(embedding.predict(texts[:1])[0]["embedding"]) - want[0]).max() < 1e-4
        with pytest.raises(ArtifactError, match="embed\\(\\) needs an embedding file"):
            OnnxPredictor(_export_dir(run) / "model.onnx").embed(texts)
        first = _export_dir(run) / "embedding_a.onnx"  # separate encoders: the first text's tower too
        assert first.is_file() == (self.tower != "shared")
        if first.is_file():
            queries = [a for a, _ in self.texts]
            query_file = OnnxPredictor(first)
            assert query_file.metadata["tower"] == self.inputs[0]
            want_a = nlpkit.load(run["run_dir"]).embed(queries, second=False)
            assert np.abs(query_file.embed(queries) - want_a).max() < 1e-4


class TestPairClassificationContract(PairExportCase):
    """Generated pairs: do the two utterances ask for the same intent? (BiLSTM towers, MLP). Exported
    through the real entry point, ``python -m nlpkit.export``'s ``main``."""

    overrides = ("task=pair", *TINY, *BILSTM)
    texts = PAIRS
    test_metrics = ("test/accuracy", "test/f1")
    label_keys = ("label",)

    @pytest.fixture(scope="class")
    def exported(self, run) -> dict:
        from nlpkit.export.__main__ import main

        assert main([f"run_dir={run['run_dir']}"]) == 0
        return json.loads((_export_dir(run) / "export_report.json").read_text())

    def test_served_over_http_with_pairs_and_texts(self, run, exported):
        """The app (through an ASGI client): ``{"pairs"}`` on the model, ``{"texts"}`` on the embedding
        file, 422s that say what is wrong, and request schemas that accept and refuse the same bodies."""
        import asyncio

        import httpx
        import jsonschema

        from nlpkit.serving import OnnxPredictor
        from nlpkit.serving.app import create_app
        from nlpkit.serving.config import ServeConfig

        pairs = [list(pair) for pair in self.texts]
        bodies = {
            "model": [
                {"pairs": pairs},
                {"texts": ["play some jazz"]},
                {"pairs": [["play some jazz"]]},
                {"pairs": [["a", "b", "c"]]},
                {"pairs": [["play some jazz", "  "]]},
            ],
            "embedding": [{"texts": ["play some jazz", "call mom"]}, {"pairs": pairs}],
        }

        async def answers(app, cases) -> tuple[list, dict]:
            async with app.api.router.lifespan_context(app.api):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                    replies = [await client.post("/predict", json=body) for body in cases]
                    schema = (await client.get("/openapi.json")).json()
            return [(reply.status_code, reply.json()) for reply in replies], schema

        got = {}
        for name, cases in bodies.items():
            app = create_app(ServeConfig(model=str(_export_dir(run) / f"{name}.onnx"), max_wait_ms=1))
            got[name] = asyncio.run(answers(app, cases))
        (replies, schema) = got["model"]
        assert [status for status, _ in replies] == [200, 422, 422, 422, 422]
        want = OnnxPredictor(_export_dir(run) / "model.onnx").predict([tuple(p) for p in pairs])
        assert_same_predictions(replies[0][1]["predictions"], want, tol=1e-6)
        assert 'send {"pairs": [[a, b], ...]}' in replies[1][1]["detail"][0]["msg"]
        assert replies[2][1]["detail"][0]["loc"] == "body.pairs.0.1"
        assert replies[3][1]["detail"][0]["loc"] == "body.pairs.0"
        assert replies[4][1]["detail"][0]["loc"] == "body.pairs.0.1"
        assert "empty or only whitespace" in replies[4][1]["detail"][0]["msg"]
        request = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator(request)
        assert validator.is_valid({"pairs": pairs}) and not validator.is_valid({"pairs": [["a"]]})
        assert not validator.is_valid({"texts": ["a"]})
        assert set(schema["components"]["schemas"]["PairPrediction"]["required"]) == {"label", "scores"}

        (replies, schema) = got["embedding"]
        assert [status for status, _ in replies] == [200, 422]
        vectors = np.array([p["embedding"] for p in replies[0][1]["predictions"]])
        assert (
            np.abs(vectors - nlpkit.load(run["run_dir"]).embed(["play some jazz", "call mom"])).max() < 1e-4
        )
        assert 'send {"texts": [...]}' in replies[1][1]["detail"][0]["msg"]
        documented = schema["components"]["schemas"]["PairEmbeddingPrediction"]["properties"]["embedding"]
        assert documented["type"] == "array" and documented["items"]["type"] == "number"

    @pytest.mark.parametrize("backend", ["torch", "onnx"])
    def test_predict_cli_reads_tab_separated_pairs(self, run, exported, tmp_path, backend):
        from nlpkit.predict import main

        lines = [f"{a}\t{b}" for a, b in self.texts]
        good = write_lines(tmp_path / "pairs.tsv", lines)
        out = tmp_path / "out.jsonl"
        main([f"run_dir={run['run_dir']}", f"input={good}", f"output={out}", f"backend={backend}"])
        rows = _jsonl(out)
        assert [(r["text_a"], r["text_b"]) for r in rows] == list(self.texts)
        want = nlpkit.load(run["run_dir"]).predict(list(self.texts))
        assert_same_predictions([{k: r[k] for k in ("label", "scores")} for r in rows], want, tol=1e-4)
        bad = write_lines(tmp_path / "bad.tsv", [lines[0], "one text without a tab", lines[1]])
        with pytest.raises(DataError, match=r"bad\.tsv:2: a pair is two texts separated by one tab"):
            main([f"run_dir={run['run_dir']}", f"input={bad}", f"output={out}", f"backend={backend}"])


class TestPairRegressionContract(PairExportCase):
    """Generated pairs' similarity score; separate bag-of-embeddings towers, cosine combination."""

    overrides = (
        "task=pair", "output=regression", "data.label_field=score", "task.monitor=val/pearson",
        "representation=bag", "model.combine=cosine", "model.shared_encoder=false", *TINY,
    )  # fmt: skip
    texts = PAIRS
    test_metrics = ("test/pearson", "test/spearman", "test/mse")
    value_keys = ("score",)
    tower = "text_b"  # separate encoders: the embedding file is the second text's tower

    def test_two_encoders_and_no_decoder(self, run):
        model = run["model"]
        assert model.representation_b is not None and model.representation_b is not model.representation
        assert model.decoder is None

    def test_test_pearson_and_spearman_are_those_of_the_predictions(self, run, builtin_dir):
        rows = _jsonl(builtin_dir / "pairs_test.jsonl")
        predicted = np.array(
            [
                p["score"]
                for p in nlpkit.load(run["run_dir"]).predict([(r["text_a"], r["text_b"]) for r in rows])
            ]
        )
        gold = np.array([r["score"] for r in rows])
        pearson = float(np.corrcoef(predicted, gold)[0, 1])
        ranks = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable")  # noqa: E731 (no ties in predictions)
        gold_ranks = np.array(
            [np.mean(np.flatnonzero(np.sort(gold) == g)) for g in gold]
        )  # average ranks for ties
        spearman = float(np.corrcoef(ranks(predicted), gold_ranks)[0, 1])
        assert math.isclose(run["metrics"]["test/pearson"], pearson, abs_tol=1e-4)
        assert math.isclose(run["metrics"]["test/spearman"], spearman, abs_tol=1e-4)


class TestRankingContract(PairExportCase):
    """Generated queries over the built-in utterances, pairwise margin loss; exported with int8."""

    overrides = ("task=ranking", "task.negatives=2", *TINY, *BILSTM)
    texts = PAIRS
    test_metrics = ("test/map", "test/mrr")
    value_keys = ("score",)
    inputs = ("query", "document")
    quantize = True

    def test_int8_files_are_gated(self, run, exported):
        """``model.int8.onnx`` behind the int8 gate; the embedding's int8 file is written only where the
        gate's absolute tolerance is small beside the vectors, else skipped with the reason."""
        from nlpkit.serving import OnnxPredictor

        quantized = exported["quantized"]
        assert quantized["gate"]["passed"] and "model.int8.onnx" in exported["files_written"]
        assert quantized["quantized_ops"].get("DynamicQuantizeLSTM", 0) > 0
        assert set(exported["metrics"]["test_onnx"]) == {"map"}
        scores = OnnxPredictor(_export_dir(run) / "model.int8.onnx").predict(list(self.texts))
        assert all(math.isfinite(s["score"]) for s in scores)
        embedding = exported["embedding"]["quantized"]
        share = 0.05 / exported["embedding"]["vectors"]["vector_rms"]
        if share > 0.1:
            assert embedding["file"] is None and "could not tell a changed vector" in embedding["skipped"]
            assert "embedding.int8.onnx" not in exported["files_written"]
        else:
            assert embedding["gate"]["passed"] and "embedding.int8.onnx" in exported["files_written"]

    def test_test_map_and_mrr_are_those_of_the_predictions(self, run, builtin_dir):
        rows = _jsonl(builtin_dir / "ranking_test.jsonl")
        scores = nlpkit.load(run["run_dir"]).predict([(r["query"], r["candidate"]) for r in rows])
        queries: dict[str, list] = {}
        for row, s in zip(rows, scores):
            queries.setdefault(row["qid"], []).append((s["score"], row["label"]))
        aps, rrs, excluded = [], [], 0
        for ranked in queries.values():  # trec_eval's way, written out: sort, walk the ranks
            if not any(label for _, label in ranked):
                excluded += 1
                continue
            ranked = sorted(ranked, key=lambda x: -x[0])
            hits, precisions = 0, []
            for rank, (_, label) in enumerate(ranked, start=1):
                if label:
                    hits += 1
                    precisions.append(hits / rank)
            aps.append(sum(precisions) / len(precisions))
            rrs.append(1 / next(rank for rank, (_, label) in enumerate(ranked, start=1) if label))
        metrics = run["metrics"]
        assert metrics["test/excluded_queries"] == excluded > 0
        assert metrics["test/queries"] == len(aps)
        assert math.isclose(metrics["test/map"], sum(aps) / len(aps), abs_tol=1e-5)
        assert math.isclose(metrics["test/mrr"], sum(rrs) / len(rrs), abs_tol=1e-5)

    def test_rank_orders_candidates_best_first(self, run):
        ranked = nlpkit.load(run["run_dir"]).rank(
            "play some jazz", ["play rock music", "set an alarm", "call mom"]
        )
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)


# ---------------------------------------------------------------------------------- metrics, losses
def test_map_and_mrr_by_hand():
    # query 0: correct at ranks 1 and 3 -> AP (1/1 + 2/3) / 2 = 5/6, RR 1
    # query 1: correct at rank 3 -> AP 1/3, RR 1/3; query 2: no correct candidate -> excluded
    scores = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.1, 0.5, 0.3, 0.2, 0.4])
    labels = torch.tensor([1.0, 0, 1, 0, 1, 0, 0, 0, 0])
    index = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2])
    assert query_ap_rr(scores[:4], labels[:4] > 0) == pytest.approx((5 / 6, 1.0))
    assert query_ap_rr(scores[7:], labels[7:] > 0) is None
    metric = RankingMetrics()
    metric.update(scores[:4], labels[:4], index[:4])  # batches hold whole queries
    metric.update(scores[4:], labels[4:], index[4:])
    got = metric.compute()
    assert float(got["map"]) == pytest.approx((5 / 6 + 1 / 3) / 2)
    assert float(got["mrr"]) == pytest.approx((1 + 1 / 3) / 2)
    assert (float(got["queries"]), float(got["excluded_queries"])) == (2, 1)


def test_ranking_losses_by_hand():
    scores = torch.tensor(
        [2.0, 0.5, 1.8, 0.0, 1.0]
    )  # query 0: [pos 2.0, neg 0.5, neg 1.8]; query 1: no positive
    relevant = torch.tensor([True, False, False, False, False])
    index = torch.tensor([0, 0, 0, 1, 1])
    # triples (2.0, 0.5) -> max(0, 1 - 1.5) = 0; (2.0, 1.8) -> 1 - 0.2 = 0.8; mean 0.4
    assert float(pairwise_loss(scores, relevant, index, margin=1.0, negatives=0)) == pytest.approx(0.4)
    expected = math.log(math.exp(2.0) + math.exp(0.5) + math.exp(1.8)) - 2.0
    assert float(listwise_loss(scores, relevant, index)) == pytest.approx(expected)


# ---------------------------------------------------------------------------------- data by overrides
def _pair_overrides(train: Path, *extra: str) -> list[str]:
    return [
        "task=pair", "data.format=tsv", f"data.train_path={train}", "data.val_path=null", "data.test_path=null",
        "data.text_a_field=s1", "data.text_b_field=s2", "data.label_field=y",
        "representation=bag", *TINY, "debug=fast", "logger=csv", *extra,
        *(["task.monitor=val/pearson"] if "output=regression" in extra else []),
    ]  # fmt: skip


def _pair_rows(n: int = 40) -> list[str]:
    return ["s1\ts2\ty"] + [
        f"{'good ' * (i % 3 + 1)}film\t{'fine ' * (i % 2 + 1)}movie\t{i % 5}" for i in range(n)
    ]


def test_tsv_pairs_by_overrides_and_bad_rows_name_file_and_line(tmp_path):
    rows = _pair_rows()
    train = write_lines(tmp_path / "train.tsv", rows)
    result = nlpkit.train(
        nlpkit.compose(_pair_overrides(train, "output=regression"), output_dir=str(tmp_path / "run"))
    )
    assert "test/pearson" not in result["metrics"] and "val/pearson" in result["metrics"]
    assert set(nlpkit.load(result["run_dir"]).predict([("good film", "fine movie")])[0]) == {"score"}

    no_second = write_lines(tmp_path / "no_second.tsv", [*rows[:5], "good film\t \t3"])
    with pytest.raises(DataError, match=r"no_second\.tsv:6: empty second text \(data\.text_b_field='s2'\)"):
        nlpkit.train(
            nlpkit.compose(_pair_overrides(no_second, "output=regression"), output_dir=str(tmp_path / "r2"))
        )
    not_a_number = write_lines(tmp_path / "nan.tsv", [*rows[:5], "good film\tfine movie\thigh"])
    with pytest.raises(DataError, match=r"nan\.tsv:6: score 'high' is not a finite number"):
        nlpkit.train(
            nlpkit.compose(
                _pair_overrides(not_a_number, "output=regression"), output_dir=str(tmp_path / "r3")
            )
        )
    skipped = nlpkit.train(
        nlpkit.compose(
            _pair_overrides(not_a_number, "output=regression", "data.on_bad_row=skip"),
            output_dir=str(tmp_path / "r4"),
        )
    )
    assert skipped["metrics"]["data/skipped_rows"] == 1


def test_extra_columns_are_refused_unless_ignored(tmp_path):
    rows = [*_pair_rows(20), "good film\tfine movie\t2\tsource-a\tsource-b"]  # STS-B's longer rows
    train = write_lines(tmp_path / "train.tsv", rows)
    with pytest.raises(DataError, match=r"train\.tsv:22: wrong column count: expected 3"):
        nlpkit.train(nlpkit.compose(_pair_overrides(train), output_dir=str(tmp_path / "r1")))
    result = nlpkit.train(
        nlpkit.compose(_pair_overrides(train, "data.extra_columns=ignore"), output_dir=str(tmp_path / "r2"))
    )
    labels = json.loads((Path(result["run_dir"]) / "labels.json").read_text())["labels"]
    assert labels == ["0", "1", "2", "3", "4"]  # classification: the y values as class names


def test_a_query_id_in_two_split_files_is_an_error(tmp_path):
    header = "qid\tq\tdoc\trel"
    train = write_lines(
        tmp_path / "train.tsv",
        [header, "q1\tred\tred car\t1", "q1\tred\tblue sky\t0", "q2\tsky\tblue sky\t1"],
    )
    test = write_lines(tmp_path / "test.tsv", [header, "q3\tcar\tred car\t1", "q2\tsky\tred car\t0"])
    overrides = [
        "task=ranking", "data.format=tsv", f"data.train_path={train}", f"data.val_path={train}",
        f"data.test_path={test}", "data.group_field=qid", "data.text_a_field=q", "data.text_b_field=doc",
        "data.label_field=rel", *TINY, "debug=fast", "logger=csv",
    ]  # fmt: skip
    with pytest.raises(DataError, match=r"query id 'q1' \(qid\) is also in another split file"):
        nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "run")))
    fixed_val = write_lines(tmp_path / "val.tsv", [header, "q4\tcar\tred car\t1"])
    with pytest.raises(
        DataError,
        match=r"test\.tsv:3: query id 'q2' \(qid\) is also in another split file, at .*train\.tsv:4",
    ):
        nlpkit.train(
            nlpkit.compose([*overrides, f"data.val_path={fixed_val}"], output_dir=str(tmp_path / "run2"))
        )


def test_cosine_classification_and_a_mismatched_label_type_are_refused():
    from nlpkit.config import validate

    with pytest.raises(ConfigError, match="model.combine=cosine gives one score per pair"):
        from nlpkit.tasks.pair.model import build_pair_model

        cfg = validate(nlpkit.compose(["task=pair", "model.combine=cosine"], output_dir="unused"))
        build_pair_model(
            cfg.model, num_outputs=2, with_output=True, vocab_size=10, padding_idx=0, unk_idx=1, vocab=None
        )
    with pytest.raises(
        ConfigError, match="data.label_type=score needs a fitting output layer: choose output=regression"
    ):
        validate(nlpkit.compose(["task=pair", "data.label_type=score"], output_dir="unused"))
    with pytest.raises(
        ConfigError, match="task.monitor=val/accuracy is a class metric.*set task.monitor=val/pearson"
    ):
        validate(nlpkit.compose(["task=pair", "output=regression"], output_dir="unused"))


def test_predict_takes_pairs(tmp_path):
    from nlpkit.tasks.pair.predictor import check_pairs

    with pytest.raises(TypeError, match=r"pairs\[0\] must be two texts"):
        check_pairs(["one text"])
    with pytest.raises(DataError, match=r"pairs\[1\]\[1\] is empty"):
        check_pairs([("a", "b"), ("c", "  ")])


@pytest.mark.parametrize(
    "encoder",
    [
        (
            "representation=docnn",
            "model.representation.num_filters=4",
            "model.representation.kernel_sizes=[2,3]",
        ),
        ("representation=bilstm", *BILSTM),
    ],
    ids=["docnn", "bilstm"],
)
def test_every_seq2vec_encoder_makes_towers_shared_or_not(tmp_path, encoder):
    train = write_lines(tmp_path / "train.tsv", _pair_rows())
    overrides = [
        *_pair_overrides(train, "model.shared_encoder=false", "model.features=[abs_diff,product,cosine]"),
        *encoder,
    ]
    result = nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "run")))
    model = result["model"]
    assert (
        type(model.representation_b) is type(model.representation)
        and model.representation_b is not model.representation
    )
    assert model.decoder.layers[0].in_features == 2 * model.representation.output_dim + 1  # + cosine
    assert nlpkit.load(result["run_dir"]).predict([("good film", "fine movie")])[0]["label"] in {
        "0",
        "1",
        "2",
        "3",
        "4",
    }
    with pytest.raises(
        ConfigError, match=r"model.features=\['sum'\]: list one or more of a, b, abs_diff, product, cosine"
    ):
        nlpkit.train(nlpkit.compose([*overrides, "model.features=[sum]"], output_dir=str(tmp_path / "bad")))


def test_figure4_relevance_with_query_and_document_classification_share_one_embedding(tmp_path, builtin_dir):
    overrides = [
        f"paths.builtin_dir={builtin_dir}", "task=multitask", "multitask=figure4", "task.shared=[embedding]",
        "model=bilstm", "model.embedding.embed_dim=16", "model.representation.hidden_dim=8",
        "model.representation.attention_dim=8", "model.representation.num_layers=1", "debug=fast", "logger=csv",
        *(f"task.tasks.{name}.model.representation.{key}" for name in ("queries", "documents")
          for key in ("hidden_dim=8", "attention_dim=8", "num_layers=1")),
    ]  # fmt: skip
    result = nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "run")))
    metrics = result["metrics"]
    for key in (
        "test/relevance/map",
        "test/relevance/mrr",
        "test/queries/accuracy",
        "test/documents/macro_f1",
    ):
        assert math.isfinite(metrics[key]), key
    predictor = nlpkit.load(result["run_dir"])
    relevance = predictor.predictors["relevance"]
    embeddings = {id(p.model.embedding) for p in predictor.predictors.values()}
    assert len(embeddings) == 1, "the three sub-tasks reload with one shared embedding"
    assert set(relevance.predict([("play some jazz", "play rock music")])[0]) == {"score"}
    assert "label" in predictor.predict(["play some jazz"], task="queries")[0]

    # the relevance sub-task exports on its own: two string inputs -> score, and its tower's vectors
    from nlpkit.export import export_run
    from nlpkit.serving import OnnxPredictor

    report = export_run(result["run_dir"], task="relevance")
    assert report["passed"] and report["subtask"] == "relevance"
    export_dir = Path(result["run_dir"]) / "export" / "relevance"
    served = OnnxPredictor(export_dir / "model.onnx")
    assert served.metadata["task"] == "ranking" and served.metadata["subtask"] == "relevance"
    pairs = [("play some jazz", "play rock music"), ("wake me up at seven", "what is the weather")]
    assert_same_predictions(served.predict(pairs), relevance.predict(pairs), tol=1e-4)
    vectors = OnnxPredictor(export_dir / "embedding.onnx").embed([b for _, b in pairs])
    assert np.abs(vectors - relevance.embed([b for _, b in pairs])).max() < 1e-4


def test_the_cosine_score_starts_at_the_configured_scale_and_bias(tmp_path):
    """``model.cosine_scale``/``cosine_bias`` initialise ``scale * cos + bias`` (experiment=stsb_minilm
    starts at 5 * cos: STS-B's 0-5 range), and both stay learnable."""
    from nlpkit.tasks.pair.model import build_pair_model

    cfg = nlpkit.compose(
        [
            "task=pair",
            "output=regression",
            "model.combine=cosine",
            "model.cosine_scale=5",
            "model.cosine_bias=0.5",
        ],
        output_dir=str(tmp_path / "run"),
    )
    model = build_pair_model(
        cfg.model, num_outputs=1, with_output=True, vocab_size=30, padding_idx=0, unk_idx=1
    )
    assert float(model.cosine.scale) == 5.0 and float(model.cosine.bias) == 0.5
    assert model.cosine.scale.requires_grad and model.cosine.bias.requires_grad
