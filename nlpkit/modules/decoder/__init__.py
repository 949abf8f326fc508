"""Decoders: ``forward(representation [B, D]) -> logits [B, output_dim]``."""

from nlpkit.modules.decoder.mlp import MLPDecoder

__all__ = ["MLPDecoder"]
