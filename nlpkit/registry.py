"""Which classes a config may name with ``_target_``: nlpkit's components and the library classes
nlpkit's own ``conf/`` tree uses — nothing else.

A run directory's ``config.yaml`` is input like any other file: ``load``, ``predict``, ``evaluate`` and
``export`` rebuild the model from it, and ``hydra.utils.instantiate`` would call whatever a
``_target_`` names (``builtins.exec``, ``torch.load``, ``pathlib.Path.write_text`` …). Every
``_target_`` nlpkit builds or imports goes through :func:`resolve_target` first, which refuses a
target before importing anything unless it is

- a class defined in ``nlpkit.modules`` (embeddings, representations, decoders, outputs), an
  ``nn.Module``;
- a Lightning callback or logger class (``pytorch_lightning.callbacks.*``, ``pytorch_lightning.loggers.*``);
- or a class registered with :func:`register_component` (a notebook's or a project's own component).

Under ``callbacks.*`` and ``logger.*`` any Lightning ``Callback`` / ``Logger`` subclass is allowed too:
only ``train`` builds those, from the command line's own composition (trusted, unlike a run
directory's ``config.yaml``), and research code brings its own callbacks.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nlpkit.errors import ConfigError

#: nlpkit's interchangeable model components live here (one file + one YAML each)
COMPONENT_PACKAGE = "nlpkit.modules."
#: Lightning packages whose public callback and logger classes nlpkit's configs name
LIGHTNING_PACKAGES = ("pytorch_lightning.callbacks", "pytorch_lightning.loggers")

_registered: dict[str, type] = {}
#: task name -> Task class, filled by :func:`register_task` (nlpkit's own tasks and a user's)
TASKS: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Make a ``Task`` subclass available as ``task.name=<cls.name>``; usable as a class decorator.

    nlpkit's own tasks register themselves this way; a task in a user's package does the same and is
    picked up with ``imports=[that.package]`` on the command line (see :func:`import_modules`).
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls!r} needs a class attribute name = '<task name>' to be registered")
    if name in TASKS and TASKS[name] is not cls:
        raise ValueError(
            f"task name {name!r} is taken by {TASKS[name].__module__}.{TASKS[name].__qualname__}"
        )
    TASKS[name] = cls
    return cls


#: the package whose sub-packages are nlpkit's own tasks (one folder each, found, not listed)
BUILTIN_TASKS = "nlpkit.tasks"


#: tasks nlpkit no longer has -> what replaces them (named by ``task=``/``task.name=`` errors)
REMOVED_TASKS = {
    "intent": (
        "task=doc_cls featurizer=word (document classification over word + character + casing features; "
        "model=pooled_bilstm is task=intent's BiLSTM + self-attention pooling model, and "
        "data.unseen_labels=scored_wrong its scoring of val/test labels unseen in training)"
    ),
}


def get_task(name: str) -> type:
    """The task class registered as ``name`` (nlpkit's own tasks are imported on first use)."""
    importlib.import_module(BUILTIN_TASKS)  # discovery: each task folder registers itself
    if name not in TASKS and name in REMOVED_TASKS:
        raise ConfigError(f"task {name!r} was removed; use {REMOVED_TASKS[name]}")
    if name not in TASKS:
        raise ConfigError(
            f"unknown task.name {name!r}; registered tasks: {', '.join(sorted(TASKS))} (a task of your own "
            "package registers with @nlpkit.register_task; name the package with imports=[...])"
        )
    return TASKS[name]


#: featurizer name -> featurizer class, filled by :func:`register_featurizer`
FEATURIZERS: dict[str, type] = {}
#: the package whose modules are nlpkit's own featurizers (imported on first lookup)
BUILTIN_FEATURIZERS = "nlpkit.data.featurizers"


def register_featurizer(cls: type) -> type:
    """Make a featurizer class (``nlpkit.data.featurizers.TextFeaturizer``) available as
    ``data.featurizer.name=<cls.name>`` (``featurizer=<name>`` when ``conf/featurizer/<name>.yaml``
    exists); usable as a class decorator, like :func:`register_task`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls!r} needs a class attribute name = '<featurizer name>' to be registered")
    if name in FEATURIZERS and FEATURIZERS[name] is not cls:
        taken = FEATURIZERS[name]
        raise ValueError(f"featurizer name {name!r} is taken by {taken.__module__}.{taken.__qualname__}")
    FEATURIZERS[name] = cls
    return cls


def get_featurizer(name: str, where: str = "data.featurizer.name") -> type:
    """The featurizer class registered as ``name`` (nlpkit's own are imported on first use)."""
    importlib.import_module(BUILTIN_FEATURIZERS)  # discovery: each featurizer module registers itself
    if name not in FEATURIZERS:
        close = difflib.get_close_matches(str(name), list(FEATURIZERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ConfigError(
            f"unknown {where} {name!r}{hint} registered featurizers: {', '.join(sorted(FEATURIZERS))} "
            "(pick one with featurizer=NAME; a featurizer of your own package registers with "
            "@nlpkit.registry.register_featurizer and is imported with imports=[...])"
        )
    return FEATURIZERS[name]


def import_modules(names: Any, where: str = "imports") -> None:
    """Import the modules ``imports=[...]`` names, so that the tasks and components they register
    (``@nlpkit.register_task``, ``@nlpkit.register_component``) can be named in the config.

    Importing runs the module's code: only for modules the person running nlpkit names, never for a
    list read from a run directory (``nlpkit.api.load_run_config`` compares that list with the one given).
    """
    if names is None:
        return
    if isinstance(names, ListConfig):
        names = OmegaConf.to_container(names)
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"{where} must be a list of module names, e.g. {where}=[mylab.encoders]; got {names!r}"
        )
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"{where}: cannot import {name!r}: {err}") from err


def register_component(cls: type) -> type:
    """Allow ``cls`` as a ``_target_`` (under its ``module.QualName``); usable as a class decorator.

    For components defined outside ``nlpkit.modules`` (a notebook, a research package). Registration
    lives in the process: import the module that registers it before loading a run that uses it.
    """
    if not inspect.isclass(cls):
        raise TypeError(f"register_component takes a class, got {cls!r}")
    _registered[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def _refuse(target: str, where: str, why: str) -> ConfigError:
    place = f"{where}._target_" if where else "_target_"
    return ConfigError(
        f"{place}={target!r} refused: {why}. nlpkit only builds classes from nlpkit.modules, Lightning "
        "callbacks/loggers, and classes registered with nlpkit.register_component"
    )


def resolve_target(target: str, where: str = "") -> type:
    """The class ``target`` names, if it is allowed (see the module docstring); else ``ConfigError``.

    Nothing is imported for a target outside the allowed packages.
    """
    if target in _registered:
        return _registered[target]
    module_name, _, name = target.rpartition(".")
    package = next((p for p in LIGHTNING_PACKAGES if module_name == p), None)
    if package is None and where.startswith(("callbacks.", "logger.")):
        return _training_plugin(target, where)
    if package is None and not target.startswith(COMPONENT_PACKAGE):
        raise _refuse(target, where, "not an nlpkit component")
    obj = _locate(target, where)
    if not inspect.isclass(obj):
        raise _refuse(target, where, "not a class")
    if package is not None:
        import pytorch_lightning as pl

        public = getattr(importlib.import_module(package), "__all__", ())
        if name not in public or not issubclass(obj, (pl.Callback, pl.loggers.Logger)):
            raise _refuse(target, where, f"not a public Lightning callback or logger of {package}")
        return obj
    from torch import nn

    # The attribute must be a component defined in nlpkit.modules, not something a module imported
    # (``nlpkit.modules.embedding.word.torch.load`` resolves to torch.load).
    if not obj.__module__.startswith(COMPONENT_PACKAGE) or not issubclass(obj, nn.Module):
        raise _refuse(target, where, "not an nn.Module component defined in nlpkit.modules")
    return obj


def _locate(target: str, where: str) -> Any:
    """The object ``target`` names, found exactly as ``hydra.utils.instantiate`` will find it."""
    from hydra.utils import get_object

    try:
        return get_object(target)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: _target_ {target!r} cannot be imported: {err}") from err


def _training_plugin(target: str, where: str) -> type:
    """A user's own Lightning callback or logger class (``callbacks.*`` / ``logger.*`` only)."""
    import pytorch_lightning as pl

    obj = _locate(target, where)
    base = pl.Callback if where.startswith("callbacks.") else pl.loggers.Logger
    if not inspect.isclass(obj) or not issubclass(obj, base):
        raise _refuse(target, where, f"not a {base.__name__} class")
    return obj


def check_targets(node: Any, where: str = "") -> None:
    """:func:`resolve_target` on every ``_target_`` in ``node``, nested ones included."""
    if isinstance(node, (DictConfig, Mapping)):
        if "_target_" in node and node["_target_"] is not None:
            resolve_target(str(node["_target_"]), where)
        for key in node:
            check_targets(node[key], f"{where}.{key}" if where else str(key))
    elif isinstance(node, (ListConfig, list, tuple)):
        for index, item in enumerate(node):
            check_targets(item, f"{where}[{index}]")


def instantiate(node: Any, where: str = "", **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` once every ``_target_`` in ``node`` is allowed."""
    from hydra.utils import instantiate as hydra_instantiate

    check_targets(node, where)
    return hydra_instantiate(node, **kwargs)


RESERVED_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def build_component(node: Any, available: Mapping[str, Any], where: str = "model") -> Any:
    """Instantiate the component ``node`` names, passing only those ``available`` values (sizes the
    framework injects: ``vocab_size``, ``input_dim``, ``num_labels``, ...) its class accepts and the
    config does not set. The one way every model builds its components.

    A node with ``components`` (``ConcatEmbedding``) has each component built the same way first.
    ``pretrained_path`` vectors are read only when ``available["vocab"]`` is given (fresh training);
    restoring a run leaves them to the checkpoint.
    """
    cls = resolve_target(str(node._target_), where)
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in available.items() if k in params and k not in node}
    if "components" in node and "components" in params:
        children = {
            name: build_component(child, available, f"{where}.components.{name}")
            for name, child in node.components.items()
            if child is not None
        }
        rest = {k: node[k] for k in node if k not in RESERVED_KEYS and k != "components"}
        return cls(components=children, **rest, **kwargs)
    missing = [
        name
        for name, param in params.items()
        if param.default is inspect.Parameter.empty
        and param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in node
        and name not in kwargs
    ]
    if missing:  # e.g. decoder=composed where the task offers no label names: say so, not a TypeError
        raise ConfigError(
            f"{where}: {cls.__name__} needs {', '.join(missing)}, which this task does not provide there "
            f"(it offers {', '.join(sorted(available)) or 'nothing'}): set {where}.{missing[0]} or choose "
            "another component"
        )
    if not node.get("pretrained_path"):
        kwargs.pop("vocab", None)  # only pretrained vectors need the vocabulary
    elif available.get("vocab") is None:
        kwargs["pretrained_path"] = None  # restoring: the weights come from the checkpoint
    # Injected values go to the constructor directly, not through Hydra: it would first convert them
    # into an OmegaConf node (seconds for a CRF's 120 x 120 allowed transitions, or a vocabulary).
    return instantiate(node, where, _partial_=True)(**kwargs)


def components() -> dict[str, type]:
    """Every class a config may build as a model component: the ``nn.Module`` classes defined in
    ``nlpkit.modules`` (``module.QualName`` -> class; not the abstract kinds of
    ``nlpkit.modules.base``) plus those registered with :func:`register_component`."""
    import pkgutil

    from torch import nn

    from nlpkit.modules.base import BASES

    found: dict[str, type] = {}
    package = importlib.import_module(COMPONENT_PACKAGE.rstrip("."))  # discovery, like the task folders
    for info in pkgutil.walk_packages(package.__path__, prefix=COMPONENT_PACKAGE):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, nn.Module)
                and obj.__module__ == info.name
                and obj not in BASES
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return {**found, **_registered}
