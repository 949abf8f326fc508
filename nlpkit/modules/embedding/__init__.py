"""Token embeddings: ``forward(*inputs named by input_keys) -> [B, T, output_dim]``; word ids
``tokens [B, T]``, character ids ``chars [B, T, C]`` or casing classes ``shapes [B, T]``."""

from nlpkit.modules.embedding.word import WordEmbedding

__all__ = ["WordEmbedding"]
