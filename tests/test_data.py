"""Readers, bad-row handling (file:line errors or counted skips), bucketing and the built-in data."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from nlpkit.data.batching import BucketBatchSampler
from nlpkit.data.builtin import ensure_builtin
from nlpkit.data.config import DocDataConfig
from nlpkit.data.doc_classification import DocClassificationDataModule
from nlpkit.data.featurizer import Featurizer, FeaturizerConfig
from nlpkit.errors import DataError
from tests.conftest import write_lines


def data_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.structured(DocDataConfig), overrides)


GOOD_TSV = [
    "text\tlabel",
    "play some jazz\tmusic",
    "is it raining\tweather",
    "play rock\tmusic",
    "sunny today?\tweather",
]


def load(tmp_path, train_lines, test_lines=None, fmt="tsv", encoding="utf-8", **kw):
    train = write_lines(tmp_path / f"train.{fmt}", train_lines, encoding)
    test = write_lines(tmp_path / f"test.{fmt}", test_lines) if test_lines is not None else None
    dm = DocClassificationDataModule(
        data_cfg(format=fmt, train_path=str(train), test_path=str(test) if test else None, **kw)
    )
    dm.load()
    return dm


@pytest.mark.parametrize(
    ("lines", "problem", "line_no"),
    [
        (GOOD_TSV + ["too\tmany\tcolumns"], "wrong column count: expected 2", 6),
        (GOOD_TSV[:2] + ["\tmusic"] + GOOD_TSV[2:], "empty text", 3),
        (GOOD_TSV[:3] + ["   \tweather"], "empty text", 4),
        (GOOD_TSV[:3] + ["no label here\t"], "missing label", 4),
    ],
)
def test_bad_tsv_rows_name_file_and_line(tmp_path, lines, problem, line_no):
    with pytest.raises(DataError) as err:
        load(tmp_path, lines)
    assert f"train.tsv:{line_no}: {problem}" in str(err.value)
    assert "on_bad_row=skip" in str(err.value)


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(("\n".join(GOOD_TSV) + "\n").encode() + b"caf\xe9 au lait\tmusic\n")
    dm = DocClassificationDataModule(data_cfg(format="tsv", train_path=str(path)))
    with pytest.raises(DataError, match=r"train.tsv:6: invalid UTF-8: byte 0xe9 at column 4"):
        dm.load()


def test_missing_jsonl_field_and_bad_json(tmp_path):
    lines = [json.dumps({"text": "play jazz", "label": "music"}), json.dumps({"text": "rain?", "label": "weather"}),
             json.dumps({"txt": "typo", "label": "music"})]  # fmt: skip
    with pytest.raises(DataError, match=r"train.jsonl:3: missing field: 'text'"):
        load(tmp_path, lines, fmt="jsonl")
    with pytest.raises(DataError, match=r"train.jsonl:3: invalid JSON"):
        load(tmp_path, lines[:2] + ['{"text": "broken'], fmt="jsonl")


def test_unseen_label_in_test_split(tmp_path):
    with pytest.raises(DataError, match=r"test.tsv:3: unseen label: 'sports'"):
        load(tmp_path, GOOD_TSV, ["text\tlabel", "play jazz\tmusic", "goal!\tsports"])


def test_skip_mode_counts_and_reports_every_bad_row(tmp_path):
    path = tmp_path / "train.tsv"
    body = "\n".join(GOOD_TSV + ["a\tb\tc", "\tmusic"]) + "\n"
    path.write_bytes(body.encode() + b"caf\xe9\tmusic\n")
    test = write_lines(tmp_path / "test.tsv", ["text\tlabel", "play jazz\tmusic", "goal!\tsports"])
    dm = DocClassificationDataModule(
        data_cfg(format="tsv", train_path=str(path), test_path=str(test), on_bad_row="skip")
    )
    dm.load()
    assert dm.policy.total_skipped == 4
    report = dm.policy.report()
    assert "skipped 4 bad rows" in report and "train.tsv:6" in report
    assert len(dm.splits["test"]) == 1


def test_header_without_the_configured_column(tmp_path):
    with pytest.raises(DataError, match=r"train.tsv:1: header has no column 'sentence' \(data.text_field\)"):
        load(tmp_path, GOOD_TSV, text_field="sentence")


def test_missing_file(tmp_path):
    dm = DocClassificationDataModule(data_cfg(format="tsv", train_path=str(tmp_path / "nope.tsv")))
    with pytest.raises(DataError, match="nope.tsv: file not found"):
        dm.load()


def test_headerless_csv_with_named_columns_and_quotes(tmp_path):
    lines = [
        '1,"play jazz, loud",music',
        '2,"is it ""raining""",weather',
        "3,play rock,music",
        "4,sunny?,weather",
    ]
    dm = load(tmp_path, lines, fmt="csv", has_header=False, columns=["id", "text", "label"])
    texts = [ex.text for ex in dm.splits["train"].examples + dm.splits["val"].examples]
    assert "play jazz, loud" in texts and 'is it "raining"' in texts


def test_label_text_format_and_held_out_validation_is_seeded(tmp_path):
    lines = [f"{i % 2} sentence number {i}" for i in range(50)]
    first = load(tmp_path, lines, fmt="label_text", val_fraction=0.2, split_seed=3)
    second = load(tmp_path, lines, fmt="label_text", val_fraction=0.2, split_seed=3)
    assert len(first.splits["val"]) == 10 and len(first.splits["train"]) == 40
    assert [e.text for e in first.splits["val"].examples] == [e.text for e in second.splits["val"].examples]
    assert first.labels.names == ["0", "1"]


def test_featurizer_options(tmp_path):
    texts = ["Play Jazz, NOW!", "play jazz now", "rare words here"]
    featurizer = Featurizer.train(texts, FeaturizerConfig(min_freq=2, max_length=3))
    assert featurizer.tokenize("Play Jazz, NOW!") == [
        "play",
        "jazz",
        "<unk>",
    ]  # lowercased, split, "," rare, truncated
    ids = featurizer.encode_batch(["rare", "", "play"])
    assert ids[0] == [featurizer.unk_id] and ids[1] == [featurizer.unk_id]
    kept = Featurizer.train(texts, FeaturizerConfig(lowercase=False, split_punctuation=False))
    assert kept.tokenize("Play Jazz, NOW!") == ["Play", "Jazz,", "NOW!"]
    featurizer.save(tmp_path / "tok.json")
    assert Featurizer.load(tmp_path / "tok.json").encode_batch(texts) == featurizer.encode_batch(texts)


def test_bucket_sampler_covers_every_index_once_and_groups_lengths():
    lengths = [i % 37 + 1 for i in range(1000)]
    sampler = BucketBatchSampler(lengths, 16, shuffle=True, seed=0, pool_batches=10)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(sampler)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 6, "bucketing keeps a batch's lengths close"
    assert [b for b in sampler] != batches, "each epoch reshuffles"
    sampler.set_epoch(0)
    assert list(sampler) == batches, "the same epoch gives the same batches"


def test_builtin_dataset_is_deterministic(tmp_path):
    a = ensure_builtin(tmp_path / "a")
    b = ensure_builtin(tmp_path / "b")
    for split in ("train", "valid", "test"):
        assert (a / f"{split}.jsonl").read_bytes() == (b / f"{split}.jsonl").read_bytes()
    record = json.loads((a / "train.jsonl").read_text().splitlines()[0])
    assert len(record["tokens"]) == len(record["slots"]) and record["text"] == " ".join(record["tokens"])


def test_sst2_experiment_reads_the_real_files():
    """experiment=sst2 reads ../shared/data's label-text files with the documented split sizes."""
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "sst2_sentence" / "stsa.binary.train").is_file():
        pytest.skip(f"SST-2 not found under {SHARED_DATA} (set NLPKIT_DATA_DIR)")
    import nlpkit
    from nlpkit.config import validate

    cfg = validate(nlpkit.compose(["experiment=sst2", f"paths.data_dir={SHARED_DATA}"]))
    dm = DocClassificationDataModule(cfg.data)
    dm.load()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 6920, "val": 872, "test": 1821}
    assert dm.labels.names == ["0", "1"] and dm.policy.total_skipped == 0
