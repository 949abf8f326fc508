"""The C++ RNNG parser (``native/build/nlpkit-rnng``) behind a pipe, torch-free: what ``nlpkit.serve`` runs
for a ``task=semantic_parse`` export (``RUN/export/native/``) and what the export's parity gate drives.

The binary reads one sentence a line on stdin and writes one tree a line on stdout (``ERROR: why`` for a
line it cannot parse), flushed per line (with ``--pieces``, a ``featurizer=wordpiece`` folder's word
pieces instead of the tree); the model folder's format is described in
``nlpkit.tasks.semantic_parse.native``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from nlpkit.data.inputs import TextRefusedError
from nlpkit.errors import ArtifactError, ExportError

MANIFEST, METADATA, NATIVE_DIR = "model.txt", "metadata.json", "native"
#: where ``make native`` puts the binary (``NLPKIT_RNNG_BINARY`` overrides it)
SOURCE_DIR = Path(__file__).resolve().parents[2] / "native"
BUILD_DIR = SOURCE_DIR / "build"
BINARY_ENV = "NLPKIT_RNNG_BINARY"


def native_binary() -> Path:
    """The ``nlpkit-rnng`` binary (``$NLPKIT_RNNG_BINARY`` or ``native/build/nlpkit-rnng``); a clear error
    saying ``make native`` when it is not built."""
    binary = Path(os.environ.get(BINARY_ENV) or BUILD_DIR / "nlpkit-rnng")
    if not binary.is_file():
        raise ExportError(
            f"the native RNNG binary {binary} is not built: run `make native` (CMake + g++ against the "
            "torch wheel's libtorch) and export again"
        )
    return binary


def find_native_dir(path: Path) -> Path | None:
    """The native parser folder ``path`` names (the folder, an export folder or a run holding one), or
    ``None`` when it names none or also holds a ``model.onnx`` (that one is served)."""
    path = Path(path)
    if not path.is_dir() or (path / "model.onnx").is_file() or (path / "export" / "model.onnx").is_file():
        return None
    for candidate in (path, path / NATIVE_DIR, path / "export" / NATIVE_DIR):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


class NativeParser:
    """The binary as a long-running process behind a pipe: ``predict(texts) -> trees``.

    A text goes as one line (its newlines become spaces: the same ``str.split()`` tokens); a text the
    binary cannot parse (blank, or more pieces than max_length) raises ``TextRefusedError`` (a
    ``ValueError``); a model folder it refuses, ``ArtifactError`` with
    the binary's reason. One caller at a time (a lock keeps questions and answers paired)."""

    def __init__(
        self, model_dir: str | Path, threads: int = 1, binary: str | Path | None = None, pieces: bool = False
    ):
        self.model_dir = Path(model_dir)
        command = [str(binary or native_binary()), str(self.model_dir), "--threads", str(int(threads))]
        if pieces:  # the tokenizer only: each text's word pieces (the export gate's piece check)
            command.append("--pieces")
        env = {**os.environ, "OMP_NUM_THREADS": str(int(threads))}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.lock = threading.Lock()

    @staticmethod
    def _line(text: str) -> bytes:
        return (text.replace("\n", " ") + "\n").encode("utf-8")

    def _answer(self, text: str) -> str:
        raw = self.process.stdout.readline()
        if not raw:
            self.process.wait()
            reason = self.process.stderr.read().decode("utf-8", "replace").strip()
            raise ArtifactError(f"{self.model_dir}: the native parser stopped: {reason or 'no reason given'}")
        answer = raw.decode("utf-8").rstrip("\n")
        if answer.startswith("ERROR: "):
            raise TextRefusedError(0, answer[len("ERROR: ") :])
        return answer

    def parse(self, text: str) -> str:
        """One text's tree (one round trip: what a latency measurement times)."""
        with self.lock:
            try:
                self.process.stdin.write(self._line(text))
                self.process.stdin.flush()
            except BrokenPipeError:
                pass  # the reason is on stderr: _answer reports it
            return self._answer(text)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Every text's tree; a thread writes the lines while the answers are read (no pipe deadlock).
        A text the binary refuses raises ``TextRefusedError`` (its position in ``texts``) after every
        answer is read, so the next call's answers stay in step with its questions."""

        def write() -> None:
            try:
                for text in texts:
                    self.process.stdin.write(self._line(text))
                self.process.stdin.flush()
            except BrokenPipeError:
                pass

        with self.lock:
            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            answers, refused = [], None
            try:
                for index, text in enumerate(texts):
                    try:
                        answers.append(self._answer(text))
                    except TextRefusedError as err:
                        refused = refused or TextRefusedError(index, err.reason)
            finally:
                writer.join()
            if refused is not None:
                raise refused
            return answers

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)

    def __enter__(self) -> NativeParser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TreeHead:
    """The served prediction's one key, ``tree`` (what ``nlpkit.serving.schemas.response_model`` reads)."""

    def fields(self):
        from nlpkit.serving.heads import ResponseField

        return [
            ResponseField("tree", "str", "the bracketed TOP tree, e.g. [IN:GET_WEATHER what is the weather ]")
        ]


class NativeParserPredictor:
    """``nlpkit.serve``'s predictor for a native parser folder: ``predict(texts) -> [{"tree": ...}]``."""

    task = "semantic_parse"
    intents: list[str] = []
    multilabel = False
    inputs = ["text"]

    def __init__(self, model_dir: str | Path, threads: int = 1):
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / MANIFEST  # what /metadata hashes
        meta_path = self.model_dir / METADATA
        try:
            self.metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ArtifactError(f"{meta_path}: not a readable native parser metadata file ({err})") from err
        if not self.metadata.get("parity", {}).get("passed"):
            raise ArtifactError(f"{meta_path}: this folder did not pass the export's parity gate")
        manifest = self.path.read_text(encoding="utf-8").splitlines()
        self.labels = [line.split(" ", 1)[1] for line in manifest if line.startswith("action ")]
        self.heads = [TreeHead()]
        self.verified_files: dict[str, str] = {}
        self.parser = NativeParser(self.model_dir, threads=threads)
        self.parser.parse("hello")  # a folder the binary refuses fails here, before the server binds

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        return [{"tree": tree} for tree in self.parser.predict(list(texts))]
