"""Report figures, rendered headless (Agg) and written atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import torch

from nlpkit.utils.io import write_bytes


def save_confusion_matrix(matrix: torch.Tensor, labels: Sequence[str], path: str | Path) -> None:
    """Rows are true labels, columns predictions; cells show counts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = len(labels)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    values = matrix.numpy()
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        peak = values.max() if values.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(values[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] > peak / 2 else "black")  # fmt: skip
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
