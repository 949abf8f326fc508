"""The doc_cls task (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.doc_cls.task import DocClassificationTask

__all__ = ["DocClassificationTask"]
