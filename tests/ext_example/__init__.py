"""A user's own package, outside nlpkit: one task and one component, registered by decorator and
picked up with ``imports=[tests.ext_example]`` (no edit to nlpkit). Used by tests/test_registry.py."""

from __future__ import annotations

import torch

import nlpkit
from nlpkit.modules.representation.bag import BagOfEmbeddings
from nlpkit.tasks.doc_cls.task import DocClassificationTask


@nlpkit.register_component
class MaxPoolBag(BagOfEmbeddings):
    """``[B, T, D] -> [B, output_dim]``: like nlpkit's bag of embeddings, but max over the real tokens."""

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        filled = embedded.masked_fill(~mask.unsqueeze(-1), float("-inf"))  # [B, T, D]
        pooled = filled.max(dim=1).values.clamp(min=-1e4)  # [B, D]; an all-padding row gets -1e4
        return self.dropout(self.project(pooled))


@nlpkit.register_task
class ExampleDocTask(DocClassificationTask):
    """Document classification under its own task name: the smallest task a user's package can add."""

    name = "example_doc"
