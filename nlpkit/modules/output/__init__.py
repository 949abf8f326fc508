"""Output layers own the loss and turn logits into scores and predictions.

``loss(logits, targets) -> scalar``; ``scores(logits) -> [B, L]`` probabilities;
``predict(logits) -> [B]`` label ids (single-label) or ``[B, L]`` 0/1 (multi-label).
"""

from nlpkit.modules.output.multilabel import MultiLabelOutput
from nlpkit.modules.output.softmax import SoftmaxOutput

__all__ = ["MultiLabelOutput", "SoftmaxOutput"]
