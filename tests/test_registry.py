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

    assert {"doc_cls", "tagging", "intent_slot", "intent", "multitask"} <= set(TASKS)


def test_a_task_name_must_be_unique_and_imports_must_be_module_names():
    from nlpkit.tasks.doc_cls import DocClassificationTask

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
