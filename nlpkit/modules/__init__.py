"""Plain ``nn.Module`` components. None of them imports Lightning or Hydra.

Every component declares ``output_dim`` so the model can size the next layer from the previous one:
token embedding -> representation -> decoder -> output layer.
"""
