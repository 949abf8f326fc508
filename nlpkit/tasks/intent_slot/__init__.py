"""The intent_slot task (see ``task.py`` for how its parts fit together)."""

from nlpkit.tasks.intent_slot.task import IntentSlotTask

__all__ = ["IntentSlotTask"]
