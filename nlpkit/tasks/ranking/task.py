"""Ranking (``task=ranking``): a query and its candidates (rows sharing ``data.group_field``), scored by
the two-tower pair model of ``task=pair`` (one score per (query, candidate)), trained with a pairwise
margin or a listwise softmax loss (``task.loss``), evaluated by MAP and MRR over queries (queries
without a correct candidate excluded, as in the WikiQA paper: ``metrics.py``).

``python -m nlpkit.train task=ranking`` trains it on generated queries over the built-in utterances
(which candidates ask for the query's intent?); ``experiment=wikiqa`` on WikiQA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nlpkit.data.config import at_least, choices
from nlpkit.data.featurizers import load_featurizer
from nlpkit.registry import register_task
from nlpkit.tasks.pair.data import DEFAULT_FEATURIZER, RankingDataConfig, RankingDataModule
from nlpkit.tasks.pair.model import build_pair_model
from nlpkit.tasks.pair.task import TwoTowerTask
from nlpkit.tasks.ranking.module import LOSS_DEFAULTS, RankingModule
from nlpkit.tasks.ranking.predictor import RankingPredictor


@dataclass
class RankingTaskConfig:
    """Which task runs, what selects its best checkpoint, and the ranking loss.

    name/monitor/monitor_mode: as every task's (``nlpkit.config.TaskConfig``).
    loss: ``pairwise`` (margin ranking on (query, positive, negative) triples) or ``listwise``
      (softmax over a query's candidates).
    margin: the pairwise loss's margin.
    negatives: wrong candidates drawn per correct one for the pairwise loss (0: all of them).
    """

    name: str = "ranking"
    monitor: str = "val/map"
    monitor_mode: str = field(default="max", metadata=choices("max", "min"))
    loss: str = field(default=LOSS_DEFAULTS["loss"], metadata=choices("pairwise", "listwise"))
    margin: float = field(default=LOSS_DEFAULTS["margin"], metadata=at_least(0))
    negatives: int = field(default=LOSS_DEFAULTS["negatives"], metadata=at_least(0))


def fix_score_offset(model) -> None:
    """Freeze the constant added to every score (the decoder's last bias, the cosine's bias): both
    ranking losses compare a query's candidates only, so it gets no gradient and means nothing."""
    biases = [model.cosine.bias] if model.cosine is not None else []
    if model.decoder is not None:
        last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
        biases += [last.bias] if last.bias is not None else []
    for bias in biases:
        bias.requires_grad_(False)


@register_task
class RankingTask(TwoTowerTask):
    name = "ranking"
    data_schema = RankingDataConfig
    task_schema = RankingTaskConfig
    distributed_metrics = True  # MAP/MRR are sums over whole queries (a query is one batch item)
    target_metric = "map"
    metric_names = ("map", "mrr", "queries", "excluded_queries", "loss")

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        if run_dir is None:
            return RankingDataModule(data_cfg)
        return RankingDataModule(data_cfg, load_featurizer(data_cfg, run_dir, DEFAULT_FEATURIZER))

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        sizes = {**datamodule.featurizer.sizes(), "vocab": vocab}
        model = build_pair_model(
            cfg.model, num_outputs=1, with_output=False, featurizer=datamodule.featurizer.name, **sizes
        )
        fix_score_offset(model)
        return RankingModule(model, cfg.optim, cfg.task)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return RankingPredictor(model, datamodule.featurizer)
