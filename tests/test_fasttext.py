"""``featurizer=ngram`` and ``model=fasttext``: word + bigram ids interleaved, the bag over them, the
one-file export computing the bigrams in the graph, and what its gate catches."""

from __future__ import annotations

import json

import pytest

import nlpkit
from nlpkit.data.featurizers import NgramConfig, NgramFeaturizer
from nlpkit.errors import ArtifactError, ExportError
from nlpkit.export import export_run
from nlpkit.serving.onnx_predictor import OnnxPredictor

TEXTS = ["not good at all", "not good", "very good", "good", "not bad"]


def test_words_and_bigrams_interleave_and_unseen_pairs_share_one_id():
    featurizer = NgramFeaturizer.train(TEXTS, NgramConfig(min_ngram_freq=2))
    words = {w: i for i, w in enumerate(featurizer.tokenizer.vocab)}
    not_good = featurizer.bigram_ids[featurizer.key(words["not"], words["good"])]  # seen twice
    assert featurizer.bigrams == [(words["not"], words["good"])]  # "very good" etc. once: not kept
    assert not_good == featurizer.unk_bigram_id + 1 == featurizer.vocab_size - 1
    assert featurizer.vocab[not_good] == "not good" and featurizer.vocab[not_good - 1] == "<unk-bigram>"
    encode = lambda text: featurizer.encode(text)["tokens"].tolist()  # noqa: E731
    assert encode("not good") == [words["not"], not_good, words["good"]]
    unk_bigram = featurizer.unk_bigram_id
    assert encode("very good , zebra") == [
        words["very"], unk_bigram, words["good"], unk_bigram, featurizer.unk_id, unk_bigram, featurizer.unk_id
    ]  # fmt: skip
    assert encode("good") == [words["good"]] and encode("") == [featurizer.unk_id]  # no pair: no bigram
    cut = NgramFeaturizer.train(TEXTS, NgramConfig(max_length=2, min_ngram_freq=1))
    assert len(cut.encode("not good at all")["tokens"]) == 3  # the pairs of the words kept


def test_a_damaged_bigram_file_names_itself(tmp_path):
    featurizer = NgramFeaturizer.train(TEXTS, NgramConfig(min_ngram_freq=1))
    featurizer.save(tmp_path)
    path = tmp_path / "ngrams.json"
    data = json.loads(path.read_text())
    for broken, message in [
        ("{", "not readable JSON"),
        (json.dumps({**data, "format": "other"}), "not an nlpkit bigram vocabulary"),
        (json.dumps({**data, "words": 3}), "made for 3 words"),
        (json.dumps({**data, "bigrams": [[0, 10**6]]}), "pairs"),
    ]:
        path.write_text(broken)
        with pytest.raises(ArtifactError, match=rf"ngrams.json: .*{message}"):
            NgramFeaturizer.load(tmp_path)
    path.unlink()
    with pytest.raises(ArtifactError, match="ngrams.json: missing"):
        NgramFeaturizer.load(tmp_path)


@pytest.fixture(scope="module")
def fasttext_run(tmp_path_factory, builtin_dir):
    """``model=fasttext`` with its default config on the built-in data (the notebook API), exported."""
    run_dir = tmp_path_factory.mktemp("fasttext") / "run"
    cfg = nlpkit.compose(["model=fasttext", f"paths.builtin_dir={builtin_dir}"], output_dir=str(run_dir))
    result = nlpkit.train(cfg)
    return run_dir, result, export_run(run_dir)


def test_fasttext_trains_reloads_and_exports_one_file_with_the_bigrams_in_the_graph(
    fasttext_run, builtin_dir
):
    run_dir, result, report = fasttext_run
    assert {"tokenizer.json", "ngrams.json"} <= {p.name for p in run_dir.iterdir()}
    model = result["model"]
    assert type(model.representation).__name__ == "BagOfEmbeddings"
    featurizer = nlpkit.load(run_dir).featurizer
    assert model.embedding.embedding.num_embeddings == featurizer.vocab_size > featurizer.words + 1
    assert result["metrics"]["test/accuracy"] > 0.6  # learns the built-in data
    texts = [json.loads(line)["text"] for line in (builtin_dir / "test.jsonl").read_text().splitlines()[:300]]
    first = nlpkit.load(run_dir).predict(texts)
    again = nlpkit.load(run_dir).predict(texts, batch_size=7)
    assert [p["label"] for p in first] == [p["label"] for p in again]
    checks = report["checks"]
    assert set(checks) == {"tokenizer_all_codepoints", "token_ids", "labels", "scores"}
    assert all(check["passed"] for check in checks.values())
    featurizer_bigrams = len(featurizer.bigrams)
    assert checks["token_ids"]["examples"]["vocabulary"] == featurizer.words + 1 + featurizer_bigrams
    onnx = OnnxPredictor(run_dir / "export" / "model.onnx").predict(texts)
    assert [p["label"] for p in onnx] == [p["label"] for p in first]
    assert all(abs(a["scores"][k] - b["scores"][k]) < 1e-4 for a, b in zip(onnx, first) for k in a["scores"])
    import onnx as onnx_lib

    ops = {node.op_type for node in onnx_lib.load(run_dir / "export" / "model.onnx").graph.node}
    assert "LabelEncoder" in ops and "LSTM" not in ops and "Conv" not in ops


def test_the_gate_compares_the_graph_bigrams_with_the_featurizer(fasttext_run, monkeypatch, tmp_path):
    """A Python-side encoding the graph does not compute (bigrams dropped) fails the token-id check."""
    import shutil

    run_dir, _, _ = fasttext_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
    monkeypatch.setattr(NgramFeaturizer, "with_bigrams", lambda self, ids: list(ids))
    with pytest.raises(ExportError, match="token_ids"):
        export_run(copy)
    assert not (copy / "export" / "model.onnx").exists()
