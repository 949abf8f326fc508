"""nlpkit's tasks: one package per task (``nlpkit/tasks/<name>/``), each registering itself.

A task package holds everything one task needs — its data module (``data.py``), model (``model.py``),
LightningModule (``module.py``), predictor (``predictor.py``), ONNX export hooks and the ``Task`` spec
that ties them together (``task.py``, decorated with ``@register_task``). Importing this package imports
every task package beside it, so a new task is one new folder: nothing here lists them. A task of a
user's own package registers the same way and is imported with ``imports=[...]``.
"""

from __future__ import annotations

import importlib
import pkgutil

from nlpkit.registry import TASKS, get_task, register_task
from nlpkit.tasks.base import Task

for _info in sorted(pkgutil.iter_modules(__path__, prefix=f"{__name__}."), key=lambda info: info.name):
    if _info.ispkg:
        importlib.import_module(_info.name)


__all__ = ["TASKS", "Task", "get_task", "register_task"]
