"""Readers, bad-row handling (file:line errors or counted skips), bucketing and the built-in data."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from omegaconf import OmegaConf

from nlpkit.data.batching import BucketBatchSampler
from nlpkit.data.builtin import ensure_builtin
from nlpkit.data.config import DocDataConfig
from nlpkit.data.featurizer import Featurizer
from nlpkit.data.featurizers import SubwordConfig
from nlpkit.errors import DataError
from nlpkit.tasks.doc_cls.data import DocClassificationDataModule
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
    featurizer = Featurizer.train(texts, SubwordConfig(min_freq=2, max_length=3))
    assert featurizer.tokenize("Play Jazz, NOW!") == [
        "play",
        "jazz",
        "<unk>",
    ]  # lowercased, split, "," rare, truncated
    ids = featurizer.encode_batch(["rare", "", "play"])
    assert ids[0] == [featurizer.unk_id] and ids[1] == [featurizer.unk_id]
    kept = Featurizer.train(texts, SubwordConfig(lowercase=False, split_punctuation=False))
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


def _builtin_split(directory, split: str) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]


def _skeleton(record: dict) -> str:
    """The utterance with each slot span replaced by ``{slot}``: its phrasing, whatever the values."""
    words = []
    for token, tag in zip(record["tokens"], record["slots"], strict=True):
        if tag.startswith("B-"):
            words.append("{" + tag[2:] + "}")
        elif tag == "O":
            words.append(token.rstrip("?"))
    return " " + " ".join(words) + " "


def _slot_values(record: dict) -> set[tuple[str, str]]:
    """``(slot, value)`` of each BIO span of ``record``."""
    spans: list[tuple[str, list[str]]] = []
    for token, tag in zip(record["tokens"], record["slots"], strict=True):
        if tag.startswith("B-"):
            spans.append((tag[2:], [token]))
        elif tag.startswith("I-"):
            spans[-1][1].append(token)
    return {(slot, " ".join(words)) for slot, words in spans}


@pytest.mark.parametrize("split", ["valid", "test"])
def test_builtin_heldout_splits_have_phrasings_and_values_train_never_has(builtin_dir, split):
    """Accuracy on the built-in test split measures generalisation, not recall of training lines."""
    from nlpkit.data.builtin import HELD_OUT_PHRASING, SLOT_VALUES, TEMPLATES

    train = _builtin_split(builtin_dir, "train")
    held_out = _builtin_split(builtin_dir, split)
    train_skeletons = [_skeleton(record) for record in train]
    held_out_skeletons = [_skeleton(record) for record in held_out]
    phrasings = [f" {template} " for p in TEMPLATES.values() for template in getattr(p, f"{split}_only")]
    for phrasing in phrasings:
        assert not any(phrasing in skeleton for skeleton in train_skeletons), phrasing
    uses = sum(any(phrasing in skeleton for phrasing in phrasings) for skeleton in held_out_skeletons)
    # most plain utterances use one; typos and combined requests hide some from this exact match
    assert uses >= 0.5 * HELD_OUT_PHRASING * len(held_out)

    train_values = {value for record in train for value in _slot_values(record)}
    unseen_values = {(slot, value) for slot, (_, held) in SLOT_VALUES.items() for value in held}
    assert not unseen_values & train_values
    held_out_values = {value for record in held_out for value in _slot_values(record)}
    assert len(unseen_values & held_out_values) >= 0.8 * len(unseen_values)


def test_builtin_intents_are_not_a_function_of_the_phrasing(builtin_dir):
    """Ambiguous phrasings and label noise: on the test lines phrased exactly as some training lines
    are, the training lines' most frequent intent for that phrasing is still wrong now and then."""
    from nlpkit.data.builtin import LABEL_NOISE

    intents_by_phrasing: dict[str, Counter] = {}
    for record in _builtin_split(builtin_dir, "train"):
        intents_by_phrasing.setdefault(_skeleton(record), Counter())[record["intent"]] += 1
    covered = [r for r in _builtin_split(builtin_dir, "test") if _skeleton(r) in intents_by_phrasing]
    right = sum(intents_by_phrasing[_skeleton(r)].most_common(1)[0][0] == r["intent"] for r in covered)
    assert len(covered) >= 200 and 0.8 <= right / len(covered) <= 0.95
    for split in ("train", "valid", "test"):
        records = _builtin_split(builtin_dir, split)
        noisy = sum(record["noisy_label"] for record in records) / len(records)
        assert noisy == pytest.approx(LABEL_NOISE, abs=0.02), split
        assert len({record["intent"] for record in records}) == 10, split


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
