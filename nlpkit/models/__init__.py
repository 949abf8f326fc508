"""Models: plain ``nn.Module``s composed from ``nlpkit.modules`` components (no Lightning here)."""
