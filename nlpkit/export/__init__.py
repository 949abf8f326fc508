"""One-file ONNX export: the featurizer, the network and the decoding in one graph.

``python -m nlpkit.export run_dir=DIR`` or ``nlpkit.export.export_run(DIR)``; the steps every export
shares are in ``nlpkit.export.pipeline``; each task's own part is its ``Task.export_onnx`` hook.
"""

from nlpkit.errors import ExportError
from nlpkit.export.pipeline import export_run

__all__ = ["ExportError", "export_run"]
