"""Representations: ``forward(embedded [B, T, D], mask [B, T]) -> [B, output_dim]``."""

from nlpkit.modules.representation.bilstm import BiLSTM, BiLSTMRepresentation
from nlpkit.modules.representation.docnn import DocNNRepresentation
from nlpkit.modules.representation.pooling import POOLINGS, make_pooling

__all__ = ["POOLINGS", "BiLSTM", "BiLSTMRepresentation", "DocNNRepresentation", "make_pooling"]
