"""The intent task (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.intent.task import IntentTask

__all__ = ["IntentTask"]
