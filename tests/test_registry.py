"""Registries: nlpkit's own tasks and components are registered, and a task and a component from a
user's own package (tests/ext_example) train, evaluate, predict and export from the CLI with
``imports=[...]`` and no edit to nlpkit — and a run needing them is refused without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nlpkit
from nlpkit.errors import ArtifactError, ConfigError
from nlpkit.registry import TASKS, import_modules
from tests.conftest import data_overrides, run_module

USER_CODE = [
    "imports=[tests.ext_example]",
    "task.name=example_doc",
    "representation=bag",
    "model.representation._target_=tests.ext_example.MaxPoolBag",
    "model.representation.hidden_dim=16",
]


def test_nlpkit_registers_its_tasks():
    import nlpkit.tasks  # noqa: F401 - registers them

    assert {"doc_cls", "tagging", "intent_slot", "multitask"} <= set(TASKS)


def test_a_task_name_must_be_unique_and_imports_must_be_module_names():
    from nlpkit.tasks.doc_cls.task import DocClassificationTask

    class Clash(DocClassificationTask):
        name = "doc_cls"

    with pytest.raises(ValueError, match="task name 'doc_cls' is taken"):
        nlpkit.register_task(Clash)
    with pytest.raises(ConfigError, match="cannot import 'no_such_package_xyz'"):
        import_modules(["no_such_package_xyz"])
    with pytest.raises(ConfigError, match="must be a list of module names"):
        import_modules("tests.ext_example")


@pytest.fixture(scope="module")
def user_run(tmp_path_factory, plain_data) -> Path:
    run_dir = tmp_path_factory.mktemp("user_code") / "run"
    run_module("nlpkit.train", [*USER_CODE, "trainer.max_epochs=4", "optim.lr=0.01", *data_overrides(plain_data, "data"),
                                "model.embedding.embed_dim=16", f"hydra.run.dir={run_dir}"])  # fmt: skip
    return run_dir


def test_a_users_task_and_component_train_from_the_cli(user_run):
    config = (user_run / "config.yaml").read_text()
    assert "name: example_doc" in config and "_target_: tests.ext_example.MaxPoolBag" in config
    assert json.loads((user_run / "run.json").read_text())["task"] == "example_doc"
    metrics = json.loads((user_run / "metrics.json").read_text())
    assert metrics["test/accuracy"] > 0.3  # it learned: 10 intents, majority class ~0.11


def test_a_run_with_user_code_is_refused_unless_its_modules_are_named(user_run, tmp_path):
    proc = run_module(
        "nlpkit.evaluate", [f"run_dir={user_run}", f"output={tmp_path / 'e.json'}"], check=False
    )
    assert proc.returncode == 1 and "trained with code from tests.ext_example" in proc.stderr
    assert "imports=[tests.ext_example]" in proc.stderr and "Traceback" not in proc.stderr

    run_module(
        "nlpkit.evaluate",
        [f"run_dir={user_run}", "imports=[tests.ext_example]", f"output={tmp_path / 'e.json'}"],
    )
    trained = json.loads((user_run / "metrics.json").read_text())
    assert json.loads((tmp_path / "e.json").read_text())["test/accuracy"] == pytest.approx(
        trained["test/accuracy"]
    )
    (tmp_path / "in.txt").write_text("play some jazz\n")
    run_module("nlpkit.predict", [f"run_dir={user_run}", "imports=[tests.ext_example]",
                                  f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'p.jsonl'}"])  # fmt: skip
    assert "label" in json.loads((tmp_path / "p.jsonl").read_text())


def test_a_notebook_imports_the_package_and_loads_the_run(user_run):
    import tests.ext_example  # noqa: F401 - the user's package, imported as a notebook would

    assert nlpkit.load(user_run).predict(["play some jazz"])[0]["label"]


def test_an_unimported_run_is_refused_in_process(user_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "tests.ext_example", raising=False)
    with pytest.raises(ArtifactError, match="trained with code from tests.ext_example"):
        nlpkit.load(user_run)


# What nlpkit ships. A component or task that disappears (renamed, moved, its module no longer
# imported) fails here, not in a user's run; one that is added is added here on purpose.
SHIPPED_TASKS = {
    "doc_cls",
    "doc_regression",
    "tagging",
    "intent_slot",
    "multitask",
    "pair",
    "ranking",
    "lm",
    "semantic_parse",
}
SHIPPED_FEATURIZERS = {"subword", "ngram", "word", "wordpiece"}
SHIPPED_COMPONENTS = {
    "nlpkit.modules.decoder.composed.ComposedLabelDecoder",
    "nlpkit.modules.decoder.mlp.MLPDecoder",
    "nlpkit.modules.decoder.word_mlp.WordMLPDecoder",
    "nlpkit.modules.embedding.char_cnn.CharCNNEmbedding",
    "nlpkit.modules.embedding.char_cnn.Highway",
    "nlpkit.modules.embedding.concat.ConcatEmbedding",
    "nlpkit.modules.embedding.shape.ShapeEmbedding",
    "nlpkit.modules.embedding.transformer.TransformerEmbedding",
    "nlpkit.modules.embedding.word.WordEmbedding",
    "nlpkit.modules.output.crf.CRFOutput",
    "nlpkit.modules.output.multilabel.MultiLabelOutput",
    "nlpkit.modules.output.regression.RegressionOutput",
    "nlpkit.modules.output.lm_softmax.AdaptiveSoftmaxOutput",
    "nlpkit.modules.output.softmax.SoftmaxOutput",
    "nlpkit.modules.output.word_softmax.WordSoftmaxOutput",
    "nlpkit.modules.representation.bag.BagOfEmbeddings",
    "nlpkit.modules.representation.bilstm.BiLSTM",
    "nlpkit.modules.representation.bilstm.BiLSTMRepresentation",
    "nlpkit.modules.representation.bseqcnn.BSeqCNNRepresentation",
    "nlpkit.modules.representation.docnn.DocNNRepresentation",
    "nlpkit.modules.representation.pooling.ClsPooling",
    "nlpkit.modules.representation.pooling.LastPooling",
    "nlpkit.modules.representation.pooling.MaxPooling",
    "nlpkit.modules.representation.pooling.MeanPooling",
    "nlpkit.modules.representation.pooling.SelfAttentionPooling",
    "nlpkit.modules.representation.token_bilstm.TokenBiLSTMRepresentation",
    "nlpkit.modules.representation.passthrough.PassThroughRepresentation",
    "nlpkit.modules.representation.lstm_lm.StackedLSTMLanguageEncoder",
}


def test_registry_snapshot():
    import nlpkit.tasks  # noqa: F401 - registers the shipped tasks
    from nlpkit.registry import components

    shipped = {name for name, cls in components().items() if name.startswith("nlpkit.")}
    assert shipped == SHIPPED_COMPONENTS
    assert {name for name, task in TASKS.items() if task.__module__.startswith("nlpkit.")} == SHIPPED_TASKS
    from nlpkit.registry import FEATURIZERS, get_featurizer

    get_featurizer("word")  # imports the shipped featurizers
    shipped = {name for name, cls in FEATURIZERS.items() if cls.__module__.startswith("nlpkit.")}
    assert shipped == SHIPPED_FEATURIZERS
    # each one has its config group choice, so featurizer=NAME picks it
    assert {p.stem for p in (Path(__file__).parent.parent / "conf" / "featurizer").glob("*.yaml")} >= shipped


def test_every_target_in_the_conf_tree_is_allowed():
    """Each ``_target_`` nlpkit's own YAML files name resolves through the allow-list (model components,
    Lightning callbacks and loggers); Hydra's launcher/sweeper plugins are Hydra's, never built by nlpkit."""
    import yaml

    from nlpkit.config import CONF_DIR
    from nlpkit.registry import resolve_target

    checked = 0
    for path in sorted(Path(CONF_DIR).rglob("*.yaml")):
        group = path.relative_to(CONF_DIR).parts[0]
        if group in ("hydra", "hparams_search"):
            continue

        def walk(node, where):
            nonlocal checked
            if isinstance(node, dict):
                if "_target_" in node:
                    resolve_target(node["_target_"], where)
                    checked += 1
                for key, value in node.items():
                    walk(value, f"{where}.{key}")

        walk(
            yaml.safe_load(path.read_text()) or {},
            {"callbacks": "callbacks", "logger": "logger"}.get(group, "model"),
        )
    assert checked >= 20


def test_a_component_missing_a_value_the_task_does_not_inject_is_a_config_error():
    """``decoder=composed`` reads the label names; a task that has none to offer (ranking scores, a
    regression) gets one error naming the slot, the class and what was offered, not a TypeError."""
    from omegaconf import OmegaConf

    from nlpkit.registry import build_component

    node = OmegaConf.load(Path(__file__).parents[1] / "conf" / "decoder" / "composed.yaml")
    with pytest.raises(ConfigError, match=r"model.decoder: ComposedLabelDecoder needs label_names.*offers input_dim, output_dim"):  # fmt: skip
        build_component(node, {"input_dim": 4, "output_dim": 1}, "model.decoder")
    decoder = build_component(
        node, {"input_dim": 4, "output_dim": 2, "label_names": ["a", "a#b"]}, "model.decoder"
    )
    assert decoder.parts == ["a", "b"]
