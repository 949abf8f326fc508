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

__all__ = ["__version__", "compose", "load", "train"]
