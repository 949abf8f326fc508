"""nlpkit: NLP models from a research idea to fast CPU serving with no rewrite in between.

Notebook use::

    import nlpkit
    cfg = nlpkit.compose(["model=cnn", "trainer.max_epochs=3"])
    result = nlpkit.train(cfg)
    predictor = nlpkit.load(result["run_dir"])
    predictor.predict(["wake me up at seven"])
"""

from nlpkit.api import compose, load, train
from nlpkit.registry import register_component, register_task
from nlpkit.version import __version__

# ``nlpkit.train`` is the function; the CLI module ``python -m nlpkit.train`` runs as ``__main__`` and
# nothing in nlpkit imports it, so the name is never rebound to the module.

__all__ = ["__version__", "compose", "load", "register_component", "register_task", "train"]
