"""The lm task: a word-level LSTM language model (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.lm.task import LMTask

__all__ = ["LMTask"]
