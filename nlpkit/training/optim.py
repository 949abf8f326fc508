"""Optimizers and learning-rate schedules chosen by the ``optim`` config group."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
SCHEDULERS = ("none", "cosine", "linear", "plateau")


def parameter_groups(model: nn.Module, cfg) -> list[dict[str, Any]]:
    """The trainable parameters as optimizer groups: with ``cfg.encoder_lr`` set, the parameters of
    every pretrained component (a module with ``pretrained = True``: the transformer embedding's class
    says so, and ``transfer`` marks the modules it copies) in a group at that rate and the rest (the
    head) at ``cfg.lr``; else one group."""
    encoder_lr = cfg.get("encoder_lr") if hasattr(cfg, "get") else getattr(cfg, "encoder_lr", None)
    pretrained: set[int] = set()
    if encoder_lr is not None:
        for module in model.modules():
            if getattr(module, "pretrained", False):
                pretrained.update(id(p) for p in module.parameters())
    encoder = [p for p in model.parameters() if p.requires_grad and id(p) in pretrained]
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in pretrained]
    groups = [{"params": head, "lr": float(cfg.lr)}] if head else []
    if encoder:
        groups.append({"params": encoder, "lr": float(encoder_lr)})
    return groups


def build_optimizer(params: Iterable[torch.nn.Parameter] | list[dict], cfg) -> torch.optim.Optimizer:
    """``params``: parameters, or groups from :func:`parameter_groups` (each keeps its own ``lr``)."""
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in params]
    else:
        params = [p for p in params if p.requires_grad]
    name = cfg.name
    if name == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas), eps=cfg.eps
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas), eps=cfg.eps
        )
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.eps)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg, total_steps: int, monitor: str, mode: str
) -> dict | None:
    """A Lightning ``lr_scheduler`` dict, or ``None`` for a constant rate. Warmup is linear, over
    ``warmup_steps`` or ``warmup_ratio`` of ``total_steps``, whichever is longer."""
    name = cfg.scheduler
    ratio = float(cfg.get("warmup_ratio", 0.0) if hasattr(cfg, "get") else getattr(cfg, "warmup_ratio", 0.0))
    warmup = max(int(cfg.warmup_steps), round(ratio * total_steps))
    if name == "none" and warmup == 0:
        return None
    if name == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=1)
        return {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}
    total = max(total_steps, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if name == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"scheduler": scheduler, "interval": "step"}
