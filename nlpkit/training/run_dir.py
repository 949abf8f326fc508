"""One run directory, one run: a lock for its single writer, a refusal to mix two runs in it, and
the record (``run.json``) that names — and fingerprints — the checkpoint every reader uses.

Semantics:

- ``train`` into a directory that already holds a run's files refuses to start unless told what to
  do with them: ``resume=auto`` (or a checkpoint path) continues that run; ``overwrite=true`` deletes
  them first and starts fresh. Hydra's own ``.hydra/``, job ``*.log`` files and the lock file do not
  count as a run's files.
- Writers (``train``, ``export``) hold an exclusive ``flock`` on ``DIR/.lock`` while they write; a
  second one fails at once with a message naming the holder's PID. The kernel drops the lock when the
  holder dies, so a killed run never leaves a stale lock.
- Readers (``evaluate``, ``load``/``predict``, ``export``, ``serve`` through export) take the
  checkpoint ``run.json`` names and check its SHA-256 against the one recorded there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, open_dict

from nlpkit.errors import ArtifactError, ConfigError, NlpkitError
from nlpkit.utils.io import sha256_file

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
RUN_RECORD = "run.json"
CHECKPOINT_DIR = "checkpoints"


def _not_a_run_file(path: Path) -> bool:
    """Files a fresh job finds or makes before nlpkit writes anything: Hydra's job record and log,
    the DDP children's Hydra folders, the lock and the writability probe."""
    name = path.name
    return (
        name in (".hydra", LOCK_FILE)
        or name.startswith((".pl_hydra", ".write_probe."))
        or (path.is_file() and name.endswith(".log"))
    )


def run_files(run_dir: Path) -> list[Path]:
    """What in ``run_dir`` belongs to a run (everything but :func:`_not_a_run_file`'s)."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if not _not_a_run_file(p))


def prepare_run_dir(run_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse, clear or keep what ``run_dir`` holds, before a training writes anything there.

    Call with the run lock held (:func:`run_lock`).
    """
    existing = run_files(run_dir)
    if existing:
        if resume is not None and overwrite:
            raise ConfigError("resume and overwrite=true contradict each other: pick one")
        if resume is None and not overwrite:
            shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in existing[:6])
            more = f" and {len(existing) - 6} more" if len(existing) > 6 else ""
            raise ConfigError(
                f"run directory {run_dir} already holds a run ({shown}{more}); pass resume=auto to continue "
                "it, overwrite=true to delete it and start fresh, or pick another directory"
            )
        if overwrite:
            log.warning("overwrite=true: deleting the previous run in %s", run_dir)
            for path in existing:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    remove_temporaries(run_dir / CHECKPOINT_DIR)
    remove_temporaries(run_dir)


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete ``*.tmp`` files left by writes that were killed before their rename (``atomic_open``).

    Only safe while holding the run lock: a live writer's temporary file would vanish under it.
    """
    removed = []
    if folder.is_dir():
        for path in folder.glob("*.tmp"):
            if path.is_file():
                path.unlink()
                removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of interrupted writes in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def run_lock(run_dir: Path, purpose: str) -> Iterator[None]:
    """Hold ``run_dir``'s exclusive writer lock; a second writer gets a ``NlpkitError`` at once."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise NlpkitError(f"cannot lock run directory {run_dir}: {err.strerror}") from err
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise NlpkitError(
                f"run directory {run_dir} is in use by another process ({holder}); wait for it to finish "
                f"or pick another directory (lock file {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {purpose}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    """``run.json``: written by ``train`` once training, validation and testing finished."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        raise ArtifactError(
            f"{path} not found: the training in {run_dir} did not finish (continue it with resume=auto), "
            "or this is not an nlpkit run directory"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record


def selected_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint ``run.json`` names as the run's selected (best) one, after checking that it is
    inside the run directory and is the very file training recorded (SHA-256)."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    name = record.get("best_checkpoint")
    if not isinstance(name, str) or not name:
        raise ArtifactError(
            f"{run_dir / RUN_RECORD} names no checkpoint (best_checkpoint={name!r}): was it trained "
            "with callbacks.model_checkpoint=null?"
        )
    root = run_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ArtifactError(
            f"{run_dir / RUN_RECORD}: best_checkpoint={name!r} points outside the run directory"
        )
    if not path.is_file():
        raise ArtifactError(f"{path}: the checkpoint {run_dir / RUN_RECORD} names is missing")
    expected = record.get("best_checkpoint_sha256")
    if expected is not None and sha256_file(path) != expected:
        raise ArtifactError(
            f"{path} is not the checkpoint this run recorded (SHA-256 differs from {run_dir / RUN_RECORD}): "
            "it was replaced after training"
        )
    return path


def _is_path_key(key: str) -> bool:
    return key.endswith(("_path", "_dir"))


def absolute_paths(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` with every relative file path made absolute (keys ending in ``_path`` or
    ``_dir``: ``paths.*``, ``data.train_path``, a sub-task's data, pretrained vectors …).

    A run's ``config.yaml`` must mean the same files from any working directory: ``evaluate`` run
    elsewhere once regenerated the built-in data there instead of reading the run's.
    """

    def walk(node: Any) -> None:
        if isinstance(node, DictConfig):
            with open_dict(node):
                for key in list(node.keys()):
                    value = node[key]
                    if isinstance(value, str) and _is_path_key(str(key)) and value and "://" not in value:
                        node[key] = os.path.abspath(os.path.expanduser(value))
                    elif key != "hydra":
                        walk(value)
        elif isinstance(node, ListConfig):
            for item in node:
                walk(item)

    cfg = cfg.copy()
    walk(cfg)
    return cfg
