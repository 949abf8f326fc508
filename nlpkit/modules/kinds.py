"""Each model slot gets the kind of component its task needs, checked on the config before anything is
built: a seq2seq encoder chosen for document classification is a one-line ``ConfigError`` naming the
choices that fit, not a shape error deep in training.

A task declares its slots and kinds (``Task.component_kinds``, e.g. ``{"representation": "seq2vec"}``);
``nlpkit.config.validate`` calls :func:`check_component_kinds` with them. The kinds are those of
:mod:`nlpkit.modules.base`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlpkit.errors import ConfigError
from nlpkit.modules.base import BASES, KINDS, Component
from nlpkit.registry import components, resolve_target

#: nlpkit's config tree: the same directory as ``nlpkit.config.CONF_DIR`` (which components may not
#: import: ``nlpkit.config`` pulls in ``nlpkit.data``)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

#: the contract to implement, for the message that tells a user which base to subclass
CONTRACTS = {
    "embedding": "forward(*inputs named by input_keys) -> [B, T, output_dim]",
    "seq2seq": "forward(x [B, T, D], mask [B, T]) -> [B, T, output_dim]",
    "seq2vec": "forward(x [B, T, D], mask [B, T]) -> [B, output_dim]",
    "decoder": "forward(x [..., input_dim]) -> [..., output_dim]",
    "output": "loss, scores and predict or decode",
    "doc_output": "loss(logits, targets), scores(logits), predict(logits) over logits [B, L]",
    "word_output": "loss(emissions, tags, mask), scores(emissions, mask), decode(emissions, mask)",
    "lm_output": "target_log_probs(states [N, D], targets [N]) -> [N], tie_to(embedding weight)",
    "layer": "forward(x [..., input_dim]) -> [..., output_dim]",
}


def kind_of(cls: Any) -> str | None:
    """The kind of a component class (``"seq2vec"``), or ``None`` for a class that subclasses none of
    the kinds' bases."""
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        return None
    kind = getattr(cls, "kind", None)
    return kind if kind in KINDS and issubclass(cls, KINDS[kind]) else None


def check_component_kinds(
    model_cfg: Any,
    kinds: Mapping[str, str],
    where: str = "model",
    task: str = "",
    conf_dir: str | Path | None = None,
) -> None:
    """``ConfigError`` unless every slot in ``kinds`` (slot -> kind) of ``model_cfg`` is a component
    config whose ``_target_`` (resolved through the allow-list, :func:`nlpkit.registry.resolve_target`)
    is a class of that kind. A component made of components (``ConcatEmbedding``) has each of them
    checked too. The message names the slot, the class and its kind, the kind needed, and what fits:
    the ``conf/<slot>/`` choices (``representation=bag``) for the top-level model, else the classes.

    ``where`` is the model's place in the config (``model``, ``task.tasks.atis.model``), ``task`` the
    task that needs the kinds (for the message).
    """
    conf = Path(conf_dir) if conf_dir is not None else CONF_DIR
    for slot, needed in kinds.items():
        if needed not in KINDS:
            raise ValueError(
                f"task {task}: component_kinds[{slot!r}]={needed!r} is not a kind; kinds: {', '.join(KINDS)}"
            )
        node = model_cfg.get(slot) if isinstance(model_cfg, Mapping) else None
        _check_node(node, needed, _Place(f"{where}.{slot}", slot, where == "model", task, conf))


@dataclass(frozen=True)
class _Place:
    """Where a component config is, and what to suggest there."""

    path: str  # model.representation
    group: str  # the config group whose choices fit the slot (conf/<group>/)
    top: bool  # the top-level model, whose slots are picked with <group>=<choice>
    task: str
    conf: Path


def _check_node(node: Any, needed: str, place: _Place) -> None:
    base = KINDS[needed]
    wanted = f"task={place.task} needs {base.description} here"
    target = node.get("_target_") if isinstance(node, Mapping) else None
    if not target:
        raise ConfigError(
            f"{place.path} must be a component config with a _target_: {wanted}; {_fits(base, place, True)}"
        )
    cls = resolve_target(str(target), place.path)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if kind_of(cls) is None:
        raise ConfigError(
            f"{place.path}: {name} subclasses none of nlpkit's component base classes, so its kind is "
            f"unknown; {wanted}: subclass nlpkit.modules.{base.__name__} ({CONTRACTS[needed]})"
        )
    if cls in BASES or inspect.isabstract(cls):
        raise ConfigError(f"{place.path}: {name} is an abstract class; {wanted}: {_fits(base, place)}")
    if not issubclass(cls, base):
        raise ConfigError(
            f"{place.path}: {cls.__name__} is {cls.description}; {wanted}: {_fits(base, place)}"
        )
    children = node.get("components") if cls.components_kind else None
    for child_name, child in (children or {}).items():
        if child is not None:  # a component set to null is left out
            inner = _Place(
                f"{place.path}.components.{child_name}", place.group, False, place.task, place.conf
            )
            _check_node(child, cls.components_kind, inner)


def _fits(base: type, place: _Place, missing: bool = False) -> str:
    """What to put there instead: ``choose representation=bag, bilstm or docnn`` (a top-level slot with
    a config group); for a missing slot without one, the model presets that have it; and else
    ``set <slot>._target_ to <classes>``."""
    choices = _choices(place.conf / place.group, base)
    if place.top and choices:
        return f"choose {place.group}={_or(choices)}"
    targets = list(dict.fromkeys(choices.values())) or [
        name for name, cls in components().items() if issubclass(cls, base) and cls not in BASES
    ]
    hint = (
        f"set {place.path}._target_ to {_or(targets)}"
        if targets
        else "no component of this kind is available"
    )
    presets = _choices(place.conf / "model", base, slot=place.group) if missing and place.top else {}
    return f"use model={_or(presets)} or {hint}" if presets else hint


def _choices(folder: Path, base: type, slot: str | None = None) -> dict[str, str]:
    """``choice -> _target_`` of the ``folder/*.yaml`` configs whose class is a ``base`` (with ``slot``:
    of the model presets whose ``model.<slot>`` is one)."""
    import yaml

    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
        node = yaml.safe_load(path.read_text())
        if slot is not None:
            node = (node or {}).get("model", {}) if isinstance(node, dict) else {}
            node = node.get(slot) if isinstance(node, dict) else None
        target = node.get("_target_") if isinstance(node, dict) else None
        try:
            cls = resolve_target(str(target)) if target else None
        except ConfigError:
            continue
        if cls is not None and issubclass(cls, base):
            found[path.stem] = str(target)
    return found


def _or(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
