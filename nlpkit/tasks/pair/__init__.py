"""The pair task: two texts -> a label or a score (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.pair.task import PairTask

__all__ = ["PairTask"]
