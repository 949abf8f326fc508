"""The doc_regression task: a real value per text (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.doc_regression.task import DocRegressionTask

__all__ = ["DocRegressionTask"]
