"""Output layers own the loss and turn logits into scores and predictions.

Document level (``DocOutputLayer``: softmax, multilabel): ``loss(logits, targets) -> scalar``;
``scores(logits) -> [B, L]`` probabilities; ``predict(logits) -> [B]`` label ids (single-label) or
``[B, L]`` 0/1 (multi-label). One value (``ValueOutputLayer``: regression): ``loss(logits [B, 1],
targets [B])``, ``predict(logits) -> [B]``. Word level (``WordOutputLayer``: word_softmax, crf): ``loss(emissions,
tags, mask)``, ``scores(emissions, mask) -> [B, T, L]``, ``decode(emissions, mask) -> [B, T]``.
"""

from nlpkit.modules.output.multilabel import MultiLabelOutput
from nlpkit.modules.output.regression import RegressionOutput
from nlpkit.modules.output.softmax import SoftmaxOutput

__all__ = ["MultiLabelOutput", "RegressionOutput", "SoftmaxOutput"]
