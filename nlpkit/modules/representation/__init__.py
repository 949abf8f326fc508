"""Representations, ``forward(embedded [B, T, D], mask [B, T])``: seq2vec encoders give one vector per
document ``[B, output_dim]`` (bag, DocNN, BiLSTM + pooling, the poolings), seq2seq encoders per-token
states ``[B, T, output_dim]`` (per-token BiLSTM, BSeqCNN) for word-level tasks."""

from nlpkit.modules.representation.bilstm import BiLSTM, BiLSTMRepresentation
from nlpkit.modules.representation.docnn import DocNNRepresentation
from nlpkit.modules.representation.pooling import POOLINGS, make_pooling

__all__ = ["POOLINGS", "BiLSTM", "BiLSTMRepresentation", "DocNNRepresentation", "make_pooling"]
