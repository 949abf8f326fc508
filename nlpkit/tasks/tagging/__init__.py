"""The tagging task (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.tagging.task import TaggingTask

__all__ = ["TaggingTask"]
