"""Decoders: ``forward(x [..., input_dim]) -> logits [..., output_dim]`` over the last axis: a document
vector ``[B, D]`` or per-token states ``[B, T, D]``."""

from nlpkit.modules.decoder.composed import ComposedLabelDecoder
from nlpkit.modules.decoder.mlp import MLPDecoder

__all__ = ["ComposedLabelDecoder", "MLPDecoder"]
