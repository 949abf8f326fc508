"""The multitask task (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.multitask.task import MultiTaskTask

__all__ = ["MultiTaskTask"]
