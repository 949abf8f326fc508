"""Token embeddings: ``forward(tokens [B, T]) -> [B, T, output_dim]``."""

from nlpkit.modules.embedding.word import WordEmbedding

__all__ = ["WordEmbedding"]
