"""nlpkit: NLP models from a research idea to fast CPU serving with no rewrite in between.

Notebook use::

    import nlpkit
    cfg = nlpkit.compose(["model=cnn", "trainer.max_epochs=3"])
    result = nlpkit.train(cfg)
    predictor = nlpkit.load(result["run_dir"])
    predictor.predict(["wake me up at seven"])
"""

__version__ = "0.1.0"

from nlpkit.api import compose, load, train  # noqa: E402
from nlpkit.registry import register_component, register_task  # noqa: E402

# ``import nlpkit.train`` (e.g. by ``python -m nlpkit.train`` or a test) rebinds ``nlpkit.train`` to the
# submodule; that module is callable and forwards to ``train(cfg)``, so ``nlpkit.train(cfg)`` always works.

__all__ = ["__version__", "compose", "load", "register_component", "register_task", "train"]
