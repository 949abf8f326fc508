"""Checkpoints: written atomically, read back with ``weights_only=True`` and clear errors."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from nlpkit.errors import ArtifactError
from nlpkit.training.run_dir import selected_checkpoint
from nlpkit.utils.io import write_bytes


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(..., weights_only=True)``: tensors and plain containers only, never code."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ArtifactError(
            f"{path}: refused: the checkpoint carries pickled objects that are not plain weights "
            f"(nlpkit loads checkpoints with weights_only=True). First reason: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ArtifactError(
            f"{path}: corrupted or truncated checkpoint ({type(err).__name__}: {err})"
        ) from err


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_bytes(path, buffer.getvalue())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes via temp file + rename and loads weights-only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path)


def model_state(checkpoint: dict[str, Any], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The plain model's weights from a Lightning checkpoint (``state_dict`` keys under ``prefix``)."""
    if "state_dict" not in checkpoint:
        raise ArtifactError("checkpoint has no 'state_dict': not a Lightning/nlpkit checkpoint")
    return {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def best_checkpoint(run_dir: str | Path) -> Path:
    """A finished run's selected checkpoint: the one its ``run.json`` names (SHA-256 checked)."""
    return selected_checkpoint(run_dir)
