"""The ranking task: a query's candidates scored and ranked (see ``task.py``)."""

from nlpkit.tasks.ranking.task import RankingTask

__all__ = ["RankingTask"]
