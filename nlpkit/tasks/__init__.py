"""Task registry: a task ties a data module, a model builder and a LightningModule together.

Each task implements :class:`nlpkit.tasks.base.Task`; ``get_task(name)`` looks one up by the
``task.name`` config value.
"""

from __future__ import annotations

from nlpkit.errors import ConfigError
from nlpkit.registry import TASKS, register_task
from nlpkit.tasks import doc_cls, intent, intent_slot, multitask, tagging  # noqa: F401 - they register
from nlpkit.tasks.base import Task

# Importing the task modules above registered nlpkit's own tasks (``@register_task``); a task of a
# user's own package registers the same way and is imported with ``imports=[...]``.


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError(
            f"unknown task.name {name!r}; registered tasks: {', '.join(sorted(TASKS))} (a task of your own "
            "package registers with @nlpkit.register_task; name the package with imports=[...])"
        )
    return TASKS[name]


def distributed_tasks() -> list[str]:
    """The tasks whose metrics are reduced across DDP processes (``trainer=ddp`` trains them)."""
    return [name for name, task in TASKS.items() if task.distributed_metrics]


__all__ = ["TASKS", "Task", "distributed_tasks", "get_task", "register_task"]
