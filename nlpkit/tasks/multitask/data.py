"""Multi-task data: one data module per sub-task, combined by a seeded batch schedule.

A sub-task's data module is whatever its task builds (``Task.datamodule``): any registered task's. Every
training step takes one batch of one sub-task. Training batches are ``{"task": name, "batch":
batch}``; validation and test run one dataloader per sub-task (Lightning's ``dataloader_idx``) whose
batches carry the task name the same way.

Schedules (``task.schedule``), each over ``N = sum of every sub-task's training batches`` steps per
epoch:

* ``round_robin``: sub-tasks take turns, in config order; a sub-task whose batches are used up drops
  out, so every batch is seen exactly once (the largest task alone fills the end of the epoch).
* ``proportional``: every batch of every sub-task exactly once, in a seeded random order: each task's
  share of any stretch of steps is proportional to its size.
* ``temperature``: each step draws a sub-task with probability proportional to
  ``batches ** (1 / temperature)`` (1 = proportional, large = uniform); a sub-task that runs out
  starts over, reshuffled. Small tasks are up-sampled without dominating.

A resumed run (``resume=auto``) draws the order of the epoch it resumes in; from a checkpoint taken in
the middle of an epoch it continues with that epoch's next step, and each sub-task's loader with its
next unseen batch (``MultiTaskBatches.state_dict``), so the resumed run trains exactly as if never
stopped.

Under DDP every process draws the same order (same seed, same per-process batch counts: each sub-task's
sampler gives every rank the same number of batches), so all processes run the same sub-task at the same
step, each on its own share of that sub-task's batches: the collectives (gradient all-reduce, and the
epoch-end metric reductions of each sub-task) pair up across processes.

With a shared embedding (``share_vocabulary``), one featurizer is built over every sub-task's training
texts, so a word has the same id whichever task it comes from. The data modules offer that through a
small protocol (``SharedFeaturizerData``), whatever their featurizer is; sub-tasks whose featurizers
differ in kind or settings cannot share one.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from nlpkit.data.readers import BadRowPolicy
from nlpkit.errors import ConfigError

SCHEDULES = ("round_robin", "proportional", "temperature")


class SharedFeaturizerData(Protocol):
    """What a sub-task's data module offers so that one featurizer (one vocabulary) serves several
    sub-tasks, as a shared embedding needs. nlpkit's data modules implement it with the featurizer
    ``data.featurizer`` picks (``nlpkit.data.featurizers``: ``subword``, ``word``).

    ``featurizer`` is ``None`` until one is built or given (a trained run's, when restoring).
    """

    featurizer: Any

    def featurizer_spec(self) -> tuple[str, dict]:
        """``(kind, settings)``: two modules can share a featurizer when both are equal."""
        ...

    def training_texts(self) -> list:
        """The training inputs the featurizer is trained on (texts or token lists, per kind)."""
        ...

    def train_featurizer(self, texts: list) -> Any:
        """A featurizer over ``texts`` (every sub-task's ``training_texts``), with this module's settings."""
        ...

    def use_featurizer(self, featurizer: Any) -> None:
        """Encode with ``featurizer`` instead of building one from this module's own training split."""
        ...


SHARED_FEATURIZER_METHODS = ("featurizer_spec", "training_texts", "train_featurizer", "use_featurizer")


def task_order(sizes: Mapping[str, int], schedule: str, temperature: float, rng: random.Random) -> list[str]:
    """The sub-task of each training step of one epoch (``sum(sizes.values())`` steps)."""
    names = list(sizes)
    total = sum(sizes.values())
    if schedule == "round_robin":
        remaining = dict(sizes)
        order: list[str] = []
        while len(order) < total:
            for name in names:
                if remaining[name]:
                    order.append(name)
                    remaining[name] -= 1
        return order
    if schedule == "proportional":
        order = [name for name in names for _ in range(sizes[name])]
        rng.shuffle(order)
        return order
    if schedule == "temperature":
        if temperature <= 0:
            raise ConfigError(f"task.temperature={temperature} must be > 0")
        weights = [sizes[name] ** (1.0 / temperature) for name in names]
        return rng.choices(names, weights=weights, k=total)
    raise ConfigError(f"task.schedule={schedule!r}; choose one of {', '.join(SCHEDULES)}")


class TaskTagged:
    """A collate function that wraps each batch as ``{"task": name, "batch": batch}``."""

    def __init__(self, task: str, collate: Callable):
        self.task = task
        self.collate = collate

    def __call__(self, items: list) -> dict[str, Any]:
        return {"task": self.task, "batch": self.collate(items)}


def tagged_loader(task: str, loader: DataLoader) -> DataLoader:
    """The same batches as ``loader`` (same sampler, workers and generator), each tagged with ``task``."""
    if loader.batch_sampler is None:
        raise ConfigError(
            f"sub-task {task!r}: its data loader batches itself (an iterable dataset, e.g. data.streaming=true); "
            "a multi-task schedule needs batches from a batch sampler"
        )
    return DataLoader(
        loader.dataset,
        batch_sampler=loader.batch_sampler,
        collate_fn=TaskTagged(task, loader.collate_fn),
        num_workers=loader.num_workers,
        persistent_workers=loader.persistent_workers,
        generator=loader.generator,  # never the global RNG dropout uses (exact resume)
    )


class MultiTaskBatches:
    """The training "dataloader": one epoch is ``len(self)`` tagged batches in the schedule's order.

    The order is drawn from ``random.Random(seed + epoch)``, so a run is reproducible. ``epoch_source``
    (the trainer's current epoch) keeps a resumed run on the same orders; without it epochs are counted
    here. Each sub-task's batch sampler is set to the same epoch. ``state_dict``/``load_state_dict``
    hold the position within the epoch (saved in checkpoints, restored by ``ResumeState``)."""

    def __init__(
        self,
        loaders: Mapping[str, DataLoader],
        schedule: str,
        temperature: float,
        seed: int,
        epoch_source: Callable[[], int | None] | None = None,
    ):
        self.loaders = dict(loaders)
        self.schedule = schedule
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.epoch_source = epoch_source
        self.epoch = 0
        self.start_step = 0  # steps of the next epoch to skip (resuming mid-epoch); used once
        self.epoch_in_progress = 0
        self.steps_done = 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders.values())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch_in_progress, "batches_done": self.steps_done}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.start_step = int(state["batches_done"])

    def _position_samplers(self, epoch: int, consumed: Mapping[str, int]) -> None:
        """Set each sub-task's sampler to ``epoch``, past the ``consumed`` batches already trained on.

        A sampler advances its epoch on every pass, so a sub-task that ran out and started over
        (``temperature``) ``k`` times is on ``epoch + k``."""
        for name, loader in self.loaders.items():
            sampler = getattr(loader, "batch_sampler", None)
            if not callable(getattr(sampler, "set_epoch", None)):
                continue
            size, used = len(loader), consumed.get(name, 0)
            passes, position = divmod(used, size) if size else (0, 0)
            sampler.set_epoch(epoch + passes)
            if position:
                sampler.start_batch = position

    def __iter__(self) -> Iterator[dict[str, Any]]:
        current = self.epoch_source() if self.epoch_source is not None else None
        epoch = self.epoch if current is None else int(current)
        skip, self.start_step = self.start_step, 0
        self.epoch = epoch + 1
        rng = random.Random(self.seed + epoch)
        sizes = {name: len(loader) for name, loader in self.loaders.items()}
        order = task_order(sizes, self.schedule, self.temperature, rng)
        self._position_samplers(epoch, Counter(order[:skip]))
        self.epoch_in_progress, self.steps_done = epoch, skip
        iterators: dict[str, Iterator] = {}
        for name in order[skip:]:
            if name not in iterators:
                iterators[name] = iter(self.loaders[name])
            try:
                batch = next(iterators[name])
            except StopIteration:  # temperature sampling: this task starts over, reshuffled
                iterators[name] = iter(self.loaders[name])
                batch = next(iterators[name])
            self.steps_done += 1  # counted as handed out, like ResumableDataLoader
            yield batch


class CombinedPolicy:
    """The bad-row counts of every sub-task, read like one ``BadRowPolicy``."""

    def __init__(self, policies: Mapping[str, BadRowPolicy]):
        self.policies = dict(policies)

    @property
    def total_skipped(self) -> int:
        return sum(policy.total_skipped for policy in self.policies.values())

    def report(self) -> str:
        return "; ".join(f"{name}: {policy.report()}" for name, policy in self.policies.items())


class MultiTaskDataModule(pl.LightningDataModule):
    """Combines one data module per sub-task (``datamodules``, in config order; ``kinds``: the task
    name of each, e.g. ``tagging``).

    ``splits`` maps each split to the sub-tasks that have it (``{"test": {"atis": dataset}}``);
    ``share_vocabulary`` builds one featurizer over all sub-tasks' training data (a shared embedding
    needs it; ``SharedFeaturizerData``) unless the sub-tasks were given a trained run's vocabularies.
    Each sub-task's module is attached to this module's trainer, so under DDP it shards its batches
    by rank as it does alone.
    """

    def __init__(
        self,
        datamodules: Mapping[str, pl.LightningDataModule],
        kinds: Mapping[str, str],
        schedule: str = "round_robin",
        temperature: float = 2.0,
        share_vocabulary: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.datamodules = dict(datamodules)
        self.kinds = dict(kinds)
        self.schedule = schedule
        self.temperature = float(temperature)
        self.share_vocabulary = share_vocabulary
        self.seed = int(seed)
        self._loaded = False

    def _build_shared_featurizer(self) -> None:
        """One featurizer over every sub-task's training texts, given to each sub-task."""
        fresh = {name: dm for name, dm in self.datamodules.items() if getattr(dm, "featurizer", None) is None}
        if not fresh:
            return  # restoring: every sub-task has the run's (identical) vocabularies
        for name, dm in fresh.items():
            missing = [m for m in SHARED_FEATURIZER_METHODS if not callable(getattr(dm, m, None))]
            if missing:
                raise ConfigError(
                    f"task.shared has 'embedding', but sub-task {name!r} (task {self.kinds[name]}): its data "
                    f"module {type(dm).__name__} cannot share a featurizer: it has no {', '.join(missing)} "
                    "(nlpkit.tasks.multitask.data.SharedFeaturizerData); leave 'embedding' out of task.shared"
                )
        specs = {name: dm.featurizer_spec() for name, dm in fresh.items()}
        first, (kind, settings) = next(iter(specs.items()))
        for name, (other_kind, other) in specs.items():
            if other_kind != kind:
                raise ConfigError(
                    f"task.shared has 'embedding', so every sub-task needs the same featurizer, but sub-task "
                    f"{first!r} (task {self.kinds[first]}) featurizes with {kind!r} and sub-task {name!r} "
                    f"(task {self.kinds[name]}) with {other_kind!r}: one embedding cannot read both; "
                    "leave 'embedding' out of task.shared"
                )
            if other != settings:
                differing = sorted(
                    k for k in settings.keys() | other.keys() if settings.get(k) != other.get(k)
                )
                raise ConfigError(
                    f"task.shared has 'embedding', so every sub-task needs the same data.featurizer: "
                    f"task.tasks.{first}.data.featurizer and task.tasks.{name}.data.featurizer differ in "
                    f"{', '.join(differing)}"
                )
        texts = [text for dm in fresh.values() for text in dm.training_texts()]
        featurizer = fresh[first].train_featurizer(texts)
        for dm in fresh.values():
            dm.use_featurizer(featurizer)

    def load(self) -> None:
        """Build the shared vocabulary if asked, then load every sub-task. Idempotent."""
        if self._loaded:
            return
        if self.share_vocabulary:
            self._build_shared_featurizer()
        for dm in self.datamodules.values():
            dm.load()
        self._loaded = True

    def setup(self, stage: str | None = None) -> None:
        self.load()

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, dm in self.datamodules.items():
            for split, dataset in dm.splits.items():
                out.setdefault(split, {})[name] = dataset
        return out

    @property
    def policy(self) -> CombinedPolicy:
        return CombinedPolicy({name: dm.policy for name, dm in self.datamodules.items()})

    def _attached(self) -> dict[str, pl.LightningDataModule]:
        """The sub-task data modules, each attached to this module's trainer (its ranks: DDP sharding)."""
        for dm in self.datamodules.values():
            dm.trainer = self.trainer
        return self.datamodules

    def train_dataloader(self) -> MultiTaskBatches:
        loaders = {name: tagged_loader(name, dm.train_dataloader()) for name, dm in self._attached().items()}
        return MultiTaskBatches(loaders, self.schedule, self.temperature, self.seed, self._current_epoch)

    def _current_epoch(self) -> int | None:
        return self.trainer.current_epoch if self.trainer is not None else None

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        """One loader per sub-task that has ``split``, in config order."""
        return [
            tagged_loader(name, getattr(dm, f"{split}_dataloader")())
            for name, dm in self._attached().items()
            if split in dm.splits
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")


__all__ = ["SCHEDULES", "MultiTaskBatches", "MultiTaskDataModule", "SharedFeaturizerData", "task_order"]
