"""Training at scale and through faults: resume after SIGKILL, DDP, bf16, launchers, streaming."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest
import torch

import nlpkit
import nlpkit.tasks
from nlpkit.data.batching import BucketBatchSampler
from nlpkit.errors import ConfigError, DataError, NlpkitError
from nlpkit.tasks.doc_cls.streaming import StreamingDocs, shuffled
from nlpkit.tasks.tagging.task import TaggingTask
from nlpkit.training.resume import newest_checkpoint, resume_checkpoint
from tests.conftest import FAST, TINY, WORD_TINY, data_overrides, run_module

TINY_MODEL = ["model.embedding.embed_dim=16", "model.decoder.hidden_dims=[8]", *TINY["bilstm"]]


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")  # wall time: the only value allowed to differ
    return metrics


# ----------------------------------------------------------------------------- faults
def test_killed_run_resumes_to_the_same_metrics_as_an_uninterrupted_run(tmp_path, plain_data):
    """Stop a CLI run twice, each time continuing with resume=auto, and compare with one uninterrupted run:

    1. SIGTERM after step 8: the run must fail (exit 1, no metrics.json); the newest checkpoint is the
       periodic step.ckpt of step 6, mid-epoch 0;
    2. the resumed run gets SIGKILL after step 11: the newest checkpoint is last.ckpt of epoch 0's end.

    Tolerance: none, the metrics must be bit-identical. Everything that decides the computation is
    restored: weights, Adam moments, loop and early-stopping state, the epoch's batch order and position
    (seeded sampler + loader state), and the dropout RNG; on CPU with one thread each op is deterministic.
    """
    overrides = [*data_overrides(plain_data, "data"), *FAST, *TINY_MODEL, "num_threads=1", "optim.lr=0.03",
                 "data.batch_size=64",
                 "trainer.max_epochs=3", "trainer.limit_train_batches=10", "trainer.limit_val_batches=3",
                 "callbacks.step_checkpoint.every_n_train_steps=3"]  # fmt: skip
    reference = nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "reference")))
    assert reference["metrics"]["global_steps"] == 30

    run_dir = tmp_path / "killed"
    for kill_step, signal_name, returncode, newest in (
        (8, "SIGTERM", 1, "step.ckpt"),
        (11, "SIGKILL", -9, "last.ckpt"),
    ):
        proc = run_module(
            "nlpkit.train",
            [*overrides, f"hydra.run.dir={run_dir}", "resume=auto", "+callbacks.kill._target_=tests.kill_switch.KillAfterStep",
             f"+callbacks.kill.step={kill_step}", f"+callbacks.kill.signal_name={signal_name}"],
            check=False,
        )  # fmt: skip
        assert proc.returncode == returncode, proc.stderr[-2000:]
        if signal_name == "SIGTERM":
            assert "training stopped by SIGTERM after 8 steps" in proc.stderr + proc.stdout
        assert not (run_dir / "metrics.json").exists()
        assert newest_checkpoint(run_dir).name == newest
        assert not list((run_dir / "checkpoints").glob("*.tmp"))

    resumed = nlpkit.train(nlpkit.compose([*overrides, "resume=auto"], output_dir=str(run_dir)))
    assert Path(json.loads((run_dir / "run.json").read_text())["resumed_from"]).name == "last.ckpt"
    assert resumed["metrics"]["val/accuracy"] > 0.2  # it learned (10 classes), so equality means something
    assert _metrics(run_dir) == _metrics(tmp_path / "reference")


def test_sigterm_while_testing_the_best_checkpoint_fails_the_run(tmp_path, builtin_dir):
    """Training is over but the run is not: a SIGTERM during the final test used to leave Lightning's
    SIGTERMException (a SystemExit with code 0) to end the process, so a killed job "succeeded"."""
    run_dir = tmp_path / "run"
    proc = run_module(
        "nlpkit.train",
        [f"paths.builtin_dir={builtin_dir}", *TINY_MODEL, "num_threads=1", "trainer.max_epochs=1",
         "++trainer.limit_train_batches=4", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=3",
         f"hydra.run.dir={run_dir}", "+callbacks.kill._target_=tests.kill_switch.SignalOnTestStart"],
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "training stopped by SIGTERM after 4 steps" in proc.stderr + proc.stdout
    assert not (run_dir / "metrics.json").exists()


def test_resume_auto_without_checkpoints_starts_fresh_and_a_bad_path_is_refused(make_cfg):
    assert resume_checkpoint("auto", Path(make_cfg().paths.output_dir)) is None
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        nlpkit.train(make_cfg("resume=nowhere.ckpt"))


def test_every_run_artifact_is_written_by_temp_file_and_rename(make_cfg, monkeypatch):
    renamed = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renamed.append(Path(dst).name)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    result = nlpkit.train(make_cfg())
    run_dir = Path(result["run_dir"])
    expected = {"config.yaml", "tokenizer.json", "labels.json", "metrics.json", "run.json", "best.ckpt",
                "last.ckpt", "confusion_matrix.png"}  # fmt: skip
    assert expected <= set(renamed)
    assert all((run_dir / name).is_file() or (run_dir / "checkpoints" / name).is_file() for name in expected)
    assert not [p for p in run_dir.rglob("*.tmp")]


def test_unusable_run_directory_fails_before_training(make_cfg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    cfg = make_cfg()
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(NlpkitError, match="is not writable"):
        nlpkit.train(cfg)


# ----------------------------------------------------------------------------- DDP
def test_bucket_sampler_gives_each_rank_a_disjoint_equal_share_of_the_training_batches():
    lengths = [(i * 7) % 13 + 1 for i in range(203)]
    single = BucketBatchSampler(lengths, 8, shuffle=True, seed=3, pool_batches=4)
    single.set_epoch(2)
    everything = list(single)
    shards = []
    for rank in range(3):
        sampler = BucketBatchSampler(
            lengths, 8, shuffle=True, seed=3, pool_batches=4, rank=rank, world_size=3
        )
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler) == 9  # ceil(26 batches / 3): equal step counts for DDP
    interleaved = [batch for step in zip(*shards) for batch in step]
    assert interleaved[: len(everything)] == everything  # rank r takes batches r::3 of the same epoch
    assert interleaved[len(everything) :] == everything[: 27 - 26]  # padded by repeating the first


def test_bucket_sampler_shards_evaluation_by_example_without_padding():
    lengths = list(range(1, 102))
    shards = [
        [i for batch in BucketBatchSampler(lengths, 16, shuffle=False, rank=r, world_size=4) for i in batch]
        for r in range(4)
    ]
    assert sorted(i for shard in shards for i in shard) == list(range(101))  # each example scored once


def test_bucket_sampler_skips_consumed_batches_for_one_epoch():
    sampler = BucketBatchSampler(list(range(1, 50)), 4, shuffle=True, seed=0)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1)
    sampler.start_batch = 5
    assert list(sampler) == full[5:]
    sampler.set_epoch(1)
    assert list(sampler) == full  # the skip applied to the resumed epoch only


@nlpkit.register_task
class OneProcessTagging(TaggingTask):
    """A user's task whose metrics are computed on one process's data only (not torchmetrics states)."""

    name = "one_process_tagging"
    distributed_metrics = False


# DDP training itself (default callbacks, metrics, SIGTERM; multi-task too) is tested in tests/test_ddp.py.
def test_ddp_refuses_a_task_whose_metrics_are_not_reduced_across_processes(make_cfg):
    with pytest.raises(
        ConfigError, match="task=one_process_tagging scores on one process only.*task=intent_slot"
    ):
        nlpkit.train(
            make_cfg("task=tagging", "task.name=one_process_tagging", "trainer=ddp", *FAST, tiny=False)
        )


def test_ddp_refuses_a_multitask_run_with_a_sub_task_whose_metrics_are_not_reduced(make_cfg):
    """task=multitask trains under DDP when every sub-task's metrics are reduced across processes; a
    sub-task that scores on one process only is named."""
    with pytest.raises(ConfigError) as err:
        nlpkit.train(
            make_cfg(
                "task=multitask",
                "task.tasks.slots.task=one_process_tagging",
                "trainer=ddp",
                *FAST,
                tiny=False,
            )
        )
    assert "task.tasks.slots.task=one_process_tagging scores on one process only" in str(err.value)
    assert "not reduced across the 2 DDP processes" in str(err.value)


# ----------------------------------------------------------------------------- precision
def test_bf16_mixed_precision_trains_on_cpu(make_cfg):
    result = nlpkit.train(make_cfg("trainer.precision=bf16-mixed", "trainer.limit_train_batches=6"))
    metrics = result["metrics"]
    assert metrics["global_steps"] == 6
    assert all(math.isfinite(metrics[k]) for k in ("val/loss", "val/accuracy", "test/loss"))
    # weights stay float32 (autocast computes in bf16), so export and reloading are unchanged
    assert {p.dtype for p in result["model"].parameters()} == {torch.float32}


# ----------------------------------------------------------------------------- launchers
def test_joblib_launcher_runs_sweep_jobs_in_parallel_processes(tmp_path, builtin_dir):
    sweep_dir = tmp_path / "joblib"
    run_module(
        "nlpkit.train",
        ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optim.lr=1e-3,3e-3",
         f"paths.builtin_dir={builtin_dir}", *FAST, *TINY_MODEL, "num_threads=1", "trainer.limit_train_batches=2",
         f"hydra.sweep.dir={sweep_dir}"],
    )  # fmt: skip
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [job.name for job in jobs] == ["0", "1"]
    assert all((job / "metrics.json").is_file() for job in jobs)
    assert "JoblibLauncher" in (sweep_dir / "multirun.yaml").read_text()


def test_slurm_launcher_config_composes(builtin_dir):
    """SLURM cannot run here; the documented launcher config must still compose and name a real class."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import get_class

    from nlpkit.config import CONF_DIR

    GlobalHydra.instance().clear()
    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.tasks_per_node=4",
                 "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=4", "trainer.num_nodes=2",
                 "hydra.launcher.nodes=2", "resume=auto"]  # fmt: skip
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node) == ("gpu", 2, 4)
    assert (cfg.trainer.strategy, cfg.trainer.num_nodes, cfg.resume) == ("ddp", 2, "auto")


# ----------------------------------------------------------------------------- streaming
@pytest.fixture
def generated_tsv(tmp_path, builtin_dir) -> dict[str, Path]:
    """A generated training file (builtin utterances, 1500 rows) plus val/test, as TSV."""
    records = [json.loads(line) for line in (builtin_dir / "train.jsonl").read_text().splitlines()]
    # the plain, correctly labelled utterances: one streamed pass of a tiny model must learn something
    records = [r for r in records if r["kind"] == "plain" and not r["noisy_label"]]
    paths = {}
    for split, rows in (("train", records[:1500]), ("val", records[1500:1700]), ("test", records[1700:1900])):
        paths[split] = tmp_path / f"{split}.tsv"
        paths[split].write_text("text\tlabel\n" + "".join(f"{r['text']}\t{r['intent']}\n" for r in rows))
    return paths


def test_shuffle_buffer_holds_at_most_its_size_and_emits_everything():
    consumed = 0

    def source():
        nonlocal consumed
        for i in range(1000):
            consumed += 1
            yield i

    out = []
    for item in shuffled(source(), 50, random.Random(0)):
        out.append(item)
        assert consumed - len(out) <= 50  # never more than the buffer in memory
    assert sorted(out) == list(range(1000)) and out != list(range(1000))


def test_streaming_epoch_covers_the_file_once_in_a_seeded_order(make_cfg, generated_tsv):
    cfg = make_cfg("data=tsv", f"data.train_path={generated_tsv['train']}", f"data.val_path={generated_tsv['val']}",
                   "data.streaming=true", "data.shuffle_buffer=64", "data.batch_size=16", "data.bucket_pool_batches=4")  # fmt: skip
    dm = nlpkit.tasks.get_task("doc_cls").datamodule(cfg.data)
    dm.load()
    stream = dm.splits["train"]
    assert isinstance(stream, StreamingDocs) and stream.num_examples == 1500

    def epoch(number: int, start_batch: int = 0) -> list[list[tuple]]:
        stream.set_epoch(number)
        stream.start_batch = start_batch
        return list(stream)

    first = epoch(0)
    assert len(first) == len(stream)
    seen = sorted((tuple(f["tokens"].tolist()), int(label)) for batch in first for f, label in batch)
    everything = sorted(
        (tuple(f["tokens"].tolist()), dm.labels.index[label])
        for f, label in zip(
            dm.featurizer.encode_batch(
                [line.split("\t")[0] for line in generated_tsv["train"].read_text().splitlines()[1:]]
            ),
            [line.split("\t")[1] for line in generated_tsv["train"].read_text().splitlines()[1:]],
        )
    )
    assert seen == everything  # every example exactly once per epoch

    def ids(batches: list[list[tuple]]) -> list[list[list[int]]]:
        return [[f["tokens"].tolist() for f, _ in batch] for batch in batches]

    order = ids(first)
    assert ids(epoch(0)) == order  # same seed + epoch
    assert ids(epoch(1)) != order  # reshuffled next epoch
    assert ids(epoch(0, start_batch=5)) == order[5:]  # resume


def test_streaming_training_end_to_end(make_cfg, generated_tsv):
    overrides = ["data=tsv", *(f"data.{s}_path={p}" for s, p in generated_tsv.items()), "data.streaming=true",
                 "data.shuffle_buffer=128", "data.batch_size=64", "trainer.limit_train_batches=null", "optim.lr=0.03",
                 "trainer.max_epochs=3"]  # fmt: skip
    result = nlpkit.train(make_cfg(*overrides))
    assert result["metrics"]["global_steps"] == 3 * math.ceil(1500 / 64)  # three full passes over the stream
    assert result["metrics"]["val/accuracy"] > 0.2  # 10 intents: chance is 0.1
    with pytest.raises(DataError, match="data.streaming=true needs data.val_path"):
        nlpkit.train(make_cfg(*overrides, "data.val_path=null", run_name="no_val"))
    with pytest.raises(DataError, match="does not combine with DDP"):
        nlpkit.train(make_cfg(*overrides, "data.num_workers=1", run_name="workers"))


def test_streaming_run_stopped_mid_epoch_resumes_to_the_same_metrics(make_cfg, generated_tsv):
    """A streamed run stopped at step 32 (newest checkpoint: step.ckpt of step 30, batch 6 of epoch 1)
    and resumed equals an uninterrupted one exactly: the stream replays epoch 1's seeded order and skips
    the 6 batches already trained on."""
    overrides = ["data=tsv", *(f"data.{s}_path={p}" for s, p in generated_tsv.items()), "data.streaming=true",
                 "data.shuffle_buffer=128", "data.batch_size=64", "trainer.limit_train_batches=null",
                 "optim.lr=0.01", "trainer.max_epochs=2", "callbacks.step_checkpoint.every_n_train_steps=5",
                 "num_threads=1"]  # fmt: skip
    reference = nlpkit.train(make_cfg(*overrides, run_name="reference"))["metrics"]
    nlpkit.train(make_cfg(*overrides, "+trainer.max_steps=32", run_name="stopped"))
    stopped = Path(make_cfg(run_name="stopped").paths.output_dir)
    assert newest_checkpoint(stopped).name == "step.ckpt"
    resumed = nlpkit.train(make_cfg(*overrides, "resume=auto", run_name="stopped"))["metrics"]
    assert json.loads((stopped / "run.json").read_text())["resumed_from"].endswith("step.ckpt")
    for metrics in (reference, resumed):
        metrics.pop("train_seconds")
    assert resumed == reference and reference["global_steps"] == 48


def test_tagging_run_with_unk_replacement_resumes_to_the_same_metrics(tmp_path, builtin_dir):
    """Tagging draws its word-to-<unk> replacements from the collator's own generator: its state is
    checkpointed too, so a run stopped mid-epoch resumes exactly. Every sentence gets a word seen once
    (a singleton), so replacements really happen."""
    records = [json.loads(line) for line in (builtin_dir / "train.jsonl").read_text().splitlines()]
    # the plain, correctly labelled utterances: one streamed pass of a tiny model must learn something
    records = [r for r in records if r["kind"] == "plain" and not r["noisy_label"]]
    paths = {}
    for split, rows in (("train", records[:600]), ("val", records[600:700])):
        paths[split] = tmp_path / f"{split}.conll"
        paths[split].write_text(
            "".join(
                "".join(f"{t} {tag}\n" for t, tag in zip([*r["tokens"], f"{split}{i}"], [*r["slots"], "O"]))
                + "\n"
                for i, r in enumerate(rows)
            )
        )
    overrides = ["task=tagging", "data=conll", f"data.train_path={paths['train']}", f"data.val_path={paths['val']}",
                 *FAST, *WORD_TINY, "data.unk_replace_prob=0.5", "num_threads=1", "trainer.max_epochs=2",
                 "trainer.limit_train_batches=8", "callbacks.step_checkpoint.every_n_train_steps=3"]  # fmt: skip
    reference = nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "reference")))["metrics"]
    stopped = tmp_path / "stopped"
    nlpkit.train(nlpkit.compose([*overrides, "+trainer.max_steps=11"], output_dir=str(stopped)))
    assert newest_checkpoint(stopped).name == "step.ckpt"  # step 9: batch 1 of epoch 1
    resumed = nlpkit.train(nlpkit.compose([*overrides, "resume=auto"], output_dir=str(stopped)))["metrics"]
    for metrics in (reference, resumed):
        metrics.pop("train_seconds")
    assert resumed == reference and reference["global_steps"] == 16
