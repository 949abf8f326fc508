"""Shared fixtures: compose the real ``conf/`` tree, shrunk to tiny models, one run dir per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from omegaconf import DictConfig

import nlpkit

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("NLPKIT_DATA_DIR", ROOT.parent / "shared" / "data"))


def torch_blocked_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess in which ``import torch`` fails (a shadowing package first on
    PYTHONPATH): proves a code path needs only onnxruntime + numpy."""
    fake = tmp_path / "torch_blocked"
    (fake / "torch").mkdir(parents=True, exist_ok=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}


def run_without_torch(script: str, tmp_path: Path, timeout: int = 120):
    """Run ``python -c script`` with torch blocked (``torch_blocked_env``); the script's last stdout line,
    JSON-decoded."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=torch_blocked_env(tmp_path),
        cwd=tmp_path,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Word-level models (tagging, intent_slot, intent, multitask): word + char-CNN + casing, tiny widths.
WORD_EMBEDDING_TINY = [
    "model.embedding.components.word.embed_dim=16",
    "model.embedding.components.char.char_dim=8",
    "model.embedding.components.char.kernel_sizes=[1,2]",
    "model.embedding.components.char.num_filters=8",
    "model.embedding.components.shape.embed_dim=4",
]
TOKEN_BILSTM_TINY = ["model.representation.hidden_dim=16"]  # the presets' token encoder
BSEQCNN_TINY = ["representation=bseqcnn", "model.representation.num_filters=16"]  # the convolutional one
WORD_TINY = [*WORD_EMBEDDING_TINY, *TOKEN_BILSTM_TINY]
# ... plus the document head of joint / intent models.
JOINT_TINY = [*WORD_TINY, "model.pooling.attention_dim=8", "model.doc_decoder.hidden_dims=[8]"]

# Tiny widths per model preset: every test trains for real, in seconds.
TINY = {
    "bilstm": ["model.representation.hidden_dim=16", "model.representation.attention_dim=8"],
    "docnn": ["model.representation.num_filters=8", "model.representation.kernel_sizes=[2,3]"],
}
PRESET_REPRESENTATION = {"bilstm": "bilstm", "cnn": "docnn"}
FAST = ["debug=fast", "logger=csv", "data.batch_size=16"]


@pytest.fixture(scope="session")
def builtin_dir(tmp_path_factory) -> Path:
    from nlpkit.data.builtin import ensure_builtin

    return ensure_builtin(tmp_path_factory.mktemp("builtin"))


SMALL = {"train": 600, "valid": 150, "test": 150}  # lines of the built-in data small_data keeps


@pytest.fixture(scope="session")
def small_data(builtin_dir, tmp_path_factory) -> Path:
    """The first lines of each built-in split, as plain JSONL files (reading all of it takes seconds)."""
    small = tmp_path_factory.mktemp("small")
    for split, n in SMALL.items():
        lines = (builtin_dir / f"{split}.jsonl").read_text().splitlines()[:n]
        (small / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return small


@pytest.fixture(scope="session")
def plain_data(builtin_dir, tmp_path_factory) -> Path:
    """Only the built-in data's plain, correctly labelled utterances (no held-out phrasing, ambiguity,
    negation, double request or label noise), as JSONL: for tests that need a tiny model trained for a
    few dozen steps to learn something (resume equality, parity over varied answers) — the full data is
    deliberately hard."""
    plain = tmp_path_factory.mktemp("plain")
    for split in ("train", "valid", "test"):
        lines = [
            line
            for line in (builtin_dir / f"{split}.jsonl").read_text().splitlines()
            if (row := json.loads(line))["kind"] == "plain" and not row["noisy_label"]
        ]
        (plain / f"{split}.jsonl").write_text(
            "\n".join(lines[: SMALL[split] if split != "train" else None]) + "\n"
        )
    return plain


def data_overrides(data: Path, prefix: str) -> list[str]:
    """``prefix.format=jsonl`` and the train/val/test paths of ``small_data`` (``prefix``: ``data`` or a
    multi-task sub-task's ``task.tasks.<name>.data``)."""
    return [f"{prefix}.format=jsonl"] + [
        f"{prefix}.{key}_path={data}/{split}.jsonl"
        for key, split in (("train", "train"), ("val", "valid"), ("test", "test"))
    ]


@pytest.fixture
def make_cfg(tmp_path, builtin_dir) -> Callable[..., DictConfig]:
    """``make_cfg("model=cnn", ..., tiny=True)`` -> a composed config writing into ``tmp_path/run``."""

    def _make(*overrides: str, tiny: bool = True, run_name: str = "run") -> DictConfig:
        def choice(group: str, default: str) -> str:
            return next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{group}=")), default)

        representation = choice("representation", PRESET_REPRESENTATION.get(choice("model", "bilstm"), ""))
        widths = ["model.embedding.embed_dim=16", "model.decoder.hidden_dims=[8]"]
        extra = [*FAST, *widths, *TINY.get(representation, [])] if tiny else []
        return nlpkit.compose(
            [f"paths.builtin_dir={builtin_dir}", f"paths.log_dir={tmp_path}", *extra, *overrides],
            output_dir=str(tmp_path / run_name),
        )

    return _make


def run_module(
    module: str, args: Sequence[str], cwd: Path | None = None, check: bool = True, timeout: int = 300
):
    """Run ``python -m module args`` as a user would; return the CompletedProcess."""
    env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python -m {module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def write_lines(path: Path, lines: Sequence[str] | str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
    path.write_bytes(data.encode(encoding))
    return path
