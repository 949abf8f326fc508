"""The RNNG parser without Python (nlpkit/tasks/semantic_parse/native.py, native/): the binary is built
here (what ``make native`` runs, so a clean clone needs only cmake and g++), a tiny parser is trained
through ``nlpkit.train``, exported through ``python -m nlpkit.export``'s entry point, and the binary's
trees are the Python parser's; damaged model directories are clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import nlpkit
from nlpkit.api import load_run_config
from nlpkit.errors import ArtifactError
from nlpkit.registry import get_task
from nlpkit.tasks.semantic_parse import native
from nlpkit.tasks.semantic_parse.native import NativeParser, edge_texts, write_native_model
from nlpkit.tasks.semantic_parse.predictor import SemanticParsePredictor
from nlpkit.tasks.semantic_parse.tree import parse_tree
from tests import test_semantic_parse as sp
from tests.task_case import TaskCase


@pytest.fixture(scope="module")
def binary() -> Path:
    """The binary, built (or brought up to date) by the same CMake steps as ``make native``."""
    return native.build_native()


@pytest.fixture(scope="module")
def run(tmp_path_factory, builtin_dir, binary) -> dict:
    """A tiny parser trained on generated TOP rows, exported by ``python -m nlpkit.export``'s ``main``."""
    from nlpkit.export.__main__ import main

    data = tmp_path_factory.mktemp("native_top")
    files = {
        split: sp.write_top(data / f"{split}.tsv", sp.generated_top(i, n))
        for i, (split, n) in enumerate([("train", 48), ("eval", 12), ("test", 12)])
    }
    paths = [f"data.{k}_path={files[s]}" for k, s in (("train", "train"), ("val", "eval"), ("test", "test"))]
    cfg = nlpkit.compose(
        [*sp.TestSemanticParseTask.overrides, *paths, *TaskCase.trainer], output_dir=str(data / "run")
    )
    run_dir = Path(nlpkit.train(cfg)["run_dir"])
    assert main([f"run_dir={run_dir}"]) == 0
    return {"run_dir": run_dir, "native": run_dir / "export" / "native", "files": files}


def random_predictor(run_dir: Path, compose: str, seed: int = 3) -> SemanticParsePredictor:
    """The run's vocabularies under random weights: deep, slot-filled trees that exercise every REDUCE
    path the tiny trained parser never takes (the padding rows stay zero, as training keeps them)."""
    task = get_task("semantic_parse")
    cfg = OmegaConf.create(OmegaConf.to_container(load_run_config(run_dir)))
    cfg.model.compose = compose
    dm = task.datamodule(cfg.data, run_dir)
    model = task.module(cfg, dm, vocab=None).model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
        model.embedding.components.char.embedding.weight[0].zero_()
    return SemanticParsePredictor(model, dm.featurizer, dm.actions)


def test_the_export_passes_its_gate_and_the_binary_gives_the_python_trees(run):
    report = json.loads((run["run_dir"] / "export" / "export_report.json").read_text())
    assert report["passed"] and report["files_written"] == ["native"]
    parity = json.loads((run["native"] / "metadata.json").read_text())["parity"]
    assert parity["passed"] and parity["split"] == "test" and parity["split_trees"] == 12
    assert parity["identical_trees"] == parity["of"] == 12 + parity["edge_cases"]
    assert sorted(p.name for p in run["native"].iterdir()) == [
        "metadata.json", "model.txt", "weights.bin", "words.txt"
    ]  # fmt: skip
    texts = ["weather in paris today", "how long to the gym", "hello", "Ünïcode   İstanbul\tcafé ?!"]
    with NativeParser(run["native"]) as parser:
        assert parser.predict(texts) == nlpkit.load(run["run_dir"]).predict(texts)


@pytest.mark.parametrize("compose", ["bilstm", "sum"])
def test_random_weights_deep_trees_are_identical(run, tmp_path, compose):
    predictor = random_predictor(run["run_dir"], compose)
    texts = [
        "weather in paris today and tomorrow in rome",
        "how long to the gym beach mall",
        " ".join("abcdefghijklmnop"),
        *edge_texts(predictor.features),
    ]
    want = predictor.predict(texts)
    assert sum("[SL:" in tree for tree in want) > len(texts) // 2  # slots, so REDUCE composes children
    assert max(tree.count("[SL:") for tree in want) > 10  # many slots in one tree: deep, wide stacks
    with NativeParser(write_native_model(predictor, tmp_path / "native")) as parser:
        assert parser.predict(texts) == want


def test_the_gate_refuses_weights_that_disagree_and_removes_the_old_folder(run, monkeypatch):
    """A model directory whose trees differ from the Python parser's (here: another seed's weights) is
    never written, and the earlier passing folder goes: no artifact disagrees with the run."""
    from nlpkit.export import ExportError, export_run

    real = native.native_files
    other = random_predictor(run["run_dir"], "bilstm", seed=11)
    monkeypatch.setattr(
        native, "native_files", lambda model, *args: real(other.model, *args)
    )  # what the gate sees
    try:
        with pytest.raises(ExportError, match="parity gate failed \\(trees\\)"):
            export_run(run["run_dir"])
        assert not run["native"].exists()
        assert not any(p.name.startswith(".native") for p in run["native"].parent.iterdir())
    finally:
        monkeypatch.undo()
        export_run(run["run_dir"])  # the other tests' folder back
    assert run["native"].is_dir()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "weights.bin").unlink(), "weights.bin: cannot be read"),
        (lambda d: (d / "weights.bin").write_bytes((d / "weights.bin").read_bytes()[:-4]), "truncated"),
        (
            lambda d: (d / "weights.bin").write_bytes(b"\x01" + (d / "weights.bin").read_bytes()[1:]),
            "checksum",
        ),
        (lambda d: (d / "words.txt").write_text("<pad>\n"), "words.txt: checksum mismatch"),
        (lambda d: (d / "model.txt").write_text((d / "model.txt").read_text()[:-5]), "no 'end' line"),
        (lambda d: (d / "model.txt").write_text("hello\nend\n"), "not an nlpkit-rnng model manifest"),
    ],
    ids=[
        "missing-weights",
        "truncated-weights",
        "flipped-byte",
        "other-words",
        "cut-manifest",
        "not-a-manifest",
    ],
)
def test_a_damaged_model_directory_is_a_clear_error_naming_the_file(run, tmp_path, damage, message):
    _assert_damage_is_named(run["native"], tmp_path, damage, message)


def _assert_damage_is_named(folder: Path, tmp_path: Path, damage, message: str) -> None:
    """A copy of ``folder``, damaged, fails to load or parse with ``message`` (naming the file)."""
    broken = tmp_path / "native"
    shutil.copytree(folder, broken)
    damage(broken)
    with pytest.raises(ArtifactError, match=message), NativeParser(broken) as parser:
        parser.predict(["weather in paris today"])


def test_the_cli_answers_every_line_and_flushes_each(run, binary):
    """One answer a line, in step with the input: a blank or non-UTF-8 line answers ``ERROR: ...``."""
    lines = b"weather in rome\n\n\xff\xfe\nhow long to the mall\n"
    done = subprocess.run(
        [str(binary), str(run["native"]), "--threads", "2"], input=lines, capture_output=True, timeout=60
    )
    answers = done.stdout.decode().splitlines()
    assert done.returncode == 0 and len(answers) == 4
    assert answers[1] == "ERROR: blank text: no token to parse"
    assert answers[2] == "ERROR: the text is not valid UTF-8"
    assert parse_tree(answers[3]).tokens() == ["how", "long", "to", "the", "mall"]
    with NativeParser(run["native"]) as parser:  # a long-running process: one round trip at a time
        assert [parser.parse("weather in rome") for _ in range(3)] == [answers[0]] * 3
    refused = subprocess.run([str(binary), str(run["native"].parent)], capture_output=True, timeout=60)
    assert refused.returncode == 2 and b"model.txt: cannot be read" in refused.stderr


def test_nlpkit_serve_serves_the_parser_through_the_binary(run, tmp_path):
    """``nlpkit.serve model=RUN`` on a semantic_parse run: the native folder behind a pipe, one ``tree``
    per text, the Python parser's trees; ``/metadata`` names the task and the served manifest."""
    from nlpkit.serving.native_parser import NativeParserPredictor

    texts = ["weather in paris today", "how long to the gym", "İstanbul café ?"]
    predicted, blank, metadata = _served(run["run_dir"], [{"texts": texts}, {"texts": ["  "]}, None])
    assert predicted.status_code == 200
    want = nlpkit.load(run["run_dir"]).predict(texts)
    assert predicted.json()["predictions"] == [{"tree": tree} for tree in want]
    assert blank.status_code == 422
    assert metadata.json()["task"] == "semantic_parse" and metadata.json()["model_file"] == "model.txt"
    failed = tmp_path / "native"  # a folder whose metadata says the gate failed is refused
    shutil.copytree(run["native"], failed)
    meta = json.loads((failed / "metadata.json").read_text())
    (failed / "metadata.json").write_text(json.dumps({**meta, "parity": {**meta["parity"], "passed": False}}))
    with pytest.raises(ArtifactError, match="did not pass the export's parity gate"):
        NativeParserPredictor(failed)


def test_a_format_1_folder_is_still_read(run, tmp_path):
    """Folders written before format 2 (no ``featurizer`` line: ``featurizer=word``) keep loading."""
    old = tmp_path / "native"
    shutil.copytree(run["native"], old)
    lines = (old / "model.txt").read_text().splitlines()
    assert lines[0] == "format nlpkit-rnng 2" and "featurizer word" in lines
    lines = ["format nlpkit-rnng 1", *(line for line in lines[1:] if line != "featurizer word")]
    (old / "model.txt").write_text("\n".join(lines) + "\n")
    texts = ["weather in paris today", "how long to the gym"]
    with NativeParser(old) as parser, NativeParser(run["native"]) as current:
        assert parser.predict(texts) == current.predict(texts)


# ------------------------------------------------------------------ featurizer=wordpiece (model=rnng_minilm)

#: tokenizer stress texts for the piece checks (besides the gate's own edge cases)
PIECE_TEXTS = [
    "Ünïcode İstanbul ÉCOLE straße café cafe\u0301",
    "北京天气 weather東京 한국어",
    "what's (the) weather?! e-mail:a@b.com 3:30pm",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101,
    "zero\u200bwidth \u200b \u00ad soft\u00adhyphen",
    "[CLS] [SEP] ## ##s",
]


@pytest.fixture(scope="module")
def tiny_bert(builtin_dir, tmp_path_factory) -> Path:
    """The tiny random-weight BERT checkpoint of test_transformer.py (its WordPiece trained on the
    built-in texts)."""
    from tests.test_transformer import make_tiny_bert

    lines = (Path(builtin_dir) / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), [json.loads(line)["text"] for line in lines])


@pytest.fixture(scope="module")
def wp_run(tmp_path_factory, builtin_dir, binary, tiny_bert) -> dict:
    """``model=rnng_minilm`` over the tiny BERT (pieces cut at 32), trained by ``nlpkit.train`` and
    exported by ``python -m nlpkit.export``'s ``main``."""
    from nlpkit.export.__main__ import main

    data = tmp_path_factory.mktemp("native_wp")
    files = {
        split: sp.write_top(data / f"{split}.tsv", sp.generated_top(i, n))
        for i, (split, n) in enumerate([("train", 48), ("eval", 12), ("test", 12)])
    }
    paths = [f"data.{k}_path={files[s]}" for k, s in (("train", "train"), ("val", "eval"), ("test", "test"))]
    overrides = [
        "task=semantic_parse",
        "model=rnng_minilm",
        "data.featurizer.max_length=32",
        "data.batch_size=8",
    ]
    cfg = nlpkit.compose(
        [*overrides, *paths, f"data.featurizer.path={tiny_bert}", *TaskCase.trainer],
        output_dir=str(data / "run"),
    )
    run_dir = Path(nlpkit.train(cfg)["run_dir"])
    assert main([f"run_dir={run_dir}"]) == 0
    return {"run_dir": run_dir, "native": run_dir / "export" / "native"}


def test_wordpiece_export_passes_its_gate_and_the_binary_gives_the_python_trees(wp_run):
    report = json.loads((wp_run["run_dir"] / "export" / "export_report.json").read_text())
    assert report["passed"] and report["files_written"] == ["native"]
    meta = json.loads((wp_run["native"] / "metadata.json").read_text())
    parity = meta["parity"]
    assert meta["featurizer"] == "wordpiece" and meta["format"] == "nlpkit-rnng 2"
    assert parity["passed"] and parity["split_trees"] == 12 and parity["identical_trees"] == parity["of"]
    assert parity["too_long_refused"] >= 2  # the gate's texts past max_length, refused by both sides
    pieces = parity["pieces"]
    assert pieces["passed"] and pieces["groups"]["test"] == {"identical": 12, "of": 12}
    assert pieces["groups"]["vocabulary_and_code_points"]["of"] > 2000  # every code point, 500 a text
    assert sorted(p.name for p in wp_run["native"].iterdir()) == [
        "metadata.json", "model.txt", "pieces.txt", "weights.bin"
    ]  # fmt: skip
    texts = ["weather in paris today", "how long to the gym", "hello", *PIECE_TEXTS[:3]]
    with NativeParser(wp_run["native"]) as parser:
        assert parser.predict(texts) == nlpkit.load(wp_run["run_dir"]).predict(texts)


def test_wordpiece_random_parser_weights_deep_trees_are_identical(wp_run, tmp_path):
    """The tiny run's BERT under a parser of random weights: deep, slot-filled trees over word pieces.

    The reference is the Python parser one text at a time, as the binary runs: under these chaotic
    weights a 40-step stack amplifies the last-bit difference between BERT's states in a padded batch
    (sdpa with a padding mask) and alone, so Python's own batch-64 trees differ from its batch-1 trees
    on a text or two; the trained parsers' trees do not (9,075 / 9,075 on TOP at batch 64)."""
    task = get_task("semantic_parse")
    cfg = load_run_config(wp_run["run_dir"])
    predictor = task.predictor(cfg, wp_run["run_dir"])
    torch.manual_seed(5)
    with torch.no_grad():
        for name, parameter in predictor.model.named_parameters():
            if not name.startswith("embedding."):
                parameter.normal_(0, 0.5)
    texts = [*edge_texts(predictor.features), *PIECE_TEXTS]
    fits = [t for t, cut in zip(texts, native._over_max_length(predictor.features, texts)) if not cut]
    want = [predictor.predict([text], beam_size=1)[0] for text in fits]
    assert max(tree.count("[SL:") for tree in want) > 5
    with NativeParser(write_native_model(predictor, tmp_path / "native")) as parser:
        assert parser.predict(fits) == want


def test_wordpiece_pieces_and_the_max_length_refusal_match_the_featurizer(wp_run):
    """``--pieces``: HF's pieces per word, the [CLS]..[SEP] row cut at max_length - 2 and the first
    pieces; a text past the cut is refused with the Python predictor's reason."""
    from nlpkit.errors import DataError

    features = nlpkit.load(wp_run["run_dir"]).features
    long_words = " ".join(["weather"] * 40)  # > 30 pieces: cut, and refused by the parser
    texts = [*PIECE_TEXTS, long_words, " ".join(["supercalifragilistic"] * 9)]
    with NativeParser(wp_run["native"], pieces=True) as parser:
        assert parser.predict(texts) == native.piece_lines(features, texts)
    assert " 0 0" in native.piece_lines(features, [long_words])[0]  # words past the cut: start 0
    with pytest.raises(DataError) as python:
        nlpkit.load(wp_run["run_dir"]).predict([long_words])
    with NativeParser(wp_run["native"]) as parser, pytest.raises(ValueError) as binary_side:
        parser.parse(long_words)
    reason = "its 40 tokens need more word pieces than the featurizer's max_length"
    assert reason in str(binary_side.value)
    assert str(python.value).split(": ", 1)[1] == str(binary_side.value).split(": ", 1)[1]
    with NativeParser(wp_run["native"]) as parser:  # a refused text in a batch: the pipe stays in step
        with pytest.raises(ValueError, match=reason):
            parser.predict(["weather in paris today", long_words, "hello"])
        assert parser.predict(["how long to the gym"]) == nlpkit.load(wp_run["run_dir"]).predict(
            ["how long to the gym"]
        )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "pieces.txt").write_text("[PAD]\n"), "pieces.txt: checksum mismatch"),
        (lambda d: (d / "pieces.txt").unlink(), "pieces.txt: cannot be read"),
        (
            lambda d: _edit(d, "transformer_activation gelu", "transformer_activation gelu_new"),
            "model.txt: transformer_activation must be gelu",
        ),
        (lambda d: _edit(d, "featurizer wordpiece", "featurizer bpe"), "model.txt: featurizer must be word"),
        (lambda d: _edit(d, "transformer_layers ", "transformer_layers 9"), "no tensor embedding.encoder"),
    ],
    ids=["other-pieces", "missing-pieces", "activation", "featurizer", "more-layers"],
)
def test_a_damaged_wordpiece_folder_is_a_clear_error_naming_the_file(wp_run, tmp_path, damage, message):
    _assert_damage_is_named(wp_run["native"], tmp_path, damage, message)


def _edit(folder: Path, old: str, new: str) -> None:
    manifest = folder / "model.txt"
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new, 1))


def test_the_export_refuses_an_encoder_the_binary_does_not_implement(wp_run):
    from nlpkit.errors import ExportError

    predictor = get_task("semantic_parse").predictor(load_run_config(wp_run["run_dir"]), wp_run["run_dir"])
    predictor.model.embedding.encoder.config.hidden_act = "gelu_new"
    with pytest.raises(ExportError, match="hidden_act='gelu'.*says 'gelu_new'"):
        native.native_files(predictor.model, predictor.features, predictor.actions.names, {})


def test_nlpkit_serve_serves_a_wordpiece_folder_and_answers_a_too_long_text_with_422(wp_run):
    """The app over the wordpiece folder: the Python trees; a text past max_length pieces is the
    caller's input error (422 naming its place, the featurizer's reason), not a 500, and the requests
    batched with it are answered."""
    texts = ["weather in paris today", "İstanbul café ?"]
    too_long = " ".join(["weather"] * 40)
    good, refused, neighbour = _served(
        wp_run["run_dir"],
        [{"texts": texts}, {"texts": ["hello", too_long]}, {"texts": ["how long to the gym"]}],
        concurrent=True,
    )
    want = nlpkit.load(wp_run["run_dir"]).predict([*texts, "how long to the gym"])
    assert good.status_code == 200 and good.json()["predictions"] == [{"tree": t} for t in want[:2]]
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == "body.texts.1" and problem["type"] == "text_refused"
    assert "need more word pieces than the featurizer's max_length" in problem["msg"]
    assert neighbour.status_code == 200 and neighbour.json()["predictions"] == [{"tree": want[2]}]


def _served(run_dir: Path, bodies: list, concurrent: bool = False) -> list:
    """``nlpkit.serve``'s app on ``run_dir`` through its ASGI client: ``POST /predict`` each body
    (``None``: ``GET /metadata``), one after another or all at once (micro-batched together)."""
    import asyncio

    import httpx

    from nlpkit.serving.app import create_app
    from nlpkit.serving.config import ServeConfig

    app = create_app(ServeConfig(model=str(run_dir), max_wait_ms=20 if concurrent else 1))

    async def main() -> list:
        async with app.api.router.lifespan_context(app.api):  # starts and stops the batcher
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                calls = [
                    client.get("/metadata") if body is None else client.post("/predict", json=body)
                    for body in bodies
                ]
                if concurrent:
                    return list(await asyncio.gather(*calls))
                return [await call for call in calls]

    return asyncio.run(main())
