"""task=doc_regression (nlpkit/tasks/doc_regression/): the toy task of docs/architecture.md."""

from __future__ import annotations

import pytest

import nlpkit
from nlpkit.errors import ConfigError, DataError
from tests.conftest import write_lines
from tests.task_case import TaskCase

TINY = (
    "model.embedding.embed_dim=16",
    "model.representation.hidden_dim=16",
    "model.representation.attention_dim=8",
    "model.decoder.hidden_dims=[8]",
)


class TestDocRegressionContract(TaskCase):
    """Built-in utterances -> how many slot values each names; the whole task contract."""

    overrides = ("task=doc_regression", *TINY)
    test_metrics = ("test/mse", "test/mae", "test/pearson")
    value_keys = ("score",)

    def test_it_learns_the_count(self, run):
        # two epochs of six batches: far from converged, but far better than no signal
        assert run["metrics"]["test/pearson"] > 0.3


def test_tsv_by_overrides_alone_and_a_bad_target_names_file_and_line(tmp_path):
    rows = ["text\trating"] + [f"{'good ' * (i % 4 + 1)}movie\t{i % 4 + 1}" for i in range(40)]
    train = write_lines(tmp_path / "train.tsv", rows)
    overrides = [
        "task=doc_regression", "data.format=tsv", f"data.train_path={train}", "data.val_path=null",
        "data.test_path=null", "data.target_field=rating",
        *TINY, "debug=fast", "logger=csv",
    ]  # fmt: skip
    result = nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "run")))
    assert result["metrics"]["data/skipped_rows"] == 0
    assert set(nlpkit.load(result["run_dir"]).predict(["good movie"])[0]) == {"score"}

    bad = write_lines(tmp_path / "bad.tsv", [*rows[:5], "fine movie\tlots"])
    with pytest.raises(DataError, match=r"bad\.tsv:6: target 'lots' is not a finite number"):
        nlpkit.train(
            nlpkit.compose([*overrides, f"data.train_path={bad}"], output_dir=str(tmp_path / "bad_run"))
        )


def test_a_classification_output_layer_is_refused_before_training():
    with pytest.raises(ConfigError, match="model.output: SoftmaxOutput is a document-level output layer"):
        from nlpkit.config import validate

        validate(nlpkit.compose(["task=doc_regression", "output=softmax"], output_dir="unused"))
