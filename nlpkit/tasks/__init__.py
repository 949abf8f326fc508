"""Task registry: a task ties a data module, a model builder and a LightningModule together.

Each task implements :class:`nlpkit.tasks.base.Task`; ``get_task(name)`` looks one up by the
``task.name`` config value.
"""

from __future__ import annotations

from nlpkit.errors import ConfigError
from nlpkit.tasks.base import Task
from nlpkit.tasks.doc_cls import DocClassificationTask
from nlpkit.tasks.intent import IntentTask
from nlpkit.tasks.intent_slot import IntentSlotTask
from nlpkit.tasks.multitask import MultiTaskTask
from nlpkit.tasks.tagging import TaggingTask

TASKS: dict[str, type[Task]] = {
    DocClassificationTask.name: DocClassificationTask,
    TaggingTask.name: TaggingTask,
    IntentSlotTask.name: IntentSlotTask,
    IntentTask.name: IntentTask,
    MultiTaskTask.name: MultiTaskTask,
}


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError(f"unknown task.name {name!r}; registered tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def distributed_tasks() -> list[str]:
    """The tasks whose metrics are reduced across DDP processes (``trainer=ddp`` trains them)."""
    return [name for name, task in TASKS.items() if task.distributed_metrics]


__all__ = ["TASKS", "Task", "distributed_tasks", "get_task"]
