"""The semantic_parse task (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.semantic_parse.task import SemanticParseTask

__all__ = ["SemanticParseTask"]
