"""Word tagging: readers, tag schemes, span F1 vs seqeval, CRF vs brute force, train -> load -> predict."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import nlpkit
from nlpkit.config import validate
from nlpkit.data.inputs import EmptyTextError
from nlpkit.data.readers import BadRowPolicy
from nlpkit.data.tag_schemes import allowed_transitions, check_tags, iob1_to_bio, spans
from nlpkit.errors import ConfigError, DataError
from nlpkit.metrics.spans import span_f1
from nlpkit.modules.masking import sequence_mask
from nlpkit.modules.output.crf import CRFOutput
from nlpkit.modules.representation.bseqcnn import BSeqCNNRepresentation
from nlpkit.tasks import get_task
from nlpkit.tasks.tagging.model import build_word_tagger
from nlpkit.tasks.tagging.readers import read_tagged
from tests.conftest import BSEQCNN_TINY, TOKEN_BILSTM_TINY, WORD_TINY
from tests.task_case import TaskCase

TINY = [
    "model.embedding.components.word.embed_dim=16",
    "model.embedding.components.char.char_dim=8",
    "model.embedding.components.char.kernel_sizes=[1,2,3]",
    "model.embedding.components.char.num_filters=8",
    "model.embedding.components.shape.embed_dim=4",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "callbacks.rich_progress_bar=null",
]


ENCODERS = {"token_bilstm": TOKEN_BILSTM_TINY, "bseqcnn": BSEQCNN_TINY}  # tiny widths of each token encoder


def compose(tmp: Path, *overrides: str, encoder: str = "token_bilstm"):
    return nlpkit.compose(
        ["task=tagging", f"paths.builtin_dir={tmp}/builtin", *TINY, *ENCODERS[encoder], *overrides],
        output_dir=str(tmp / "run"),
    )


def random_tags(rng: random.Random, n: int, prefixes: str = "BIES") -> list[str]:
    return [
        rng.choice(["O"] + [f"{p}-{t}" for p in prefixes for t in ("PER", "LOC", "ORG")]) for _ in range(n)
    ]


# ---------------------------------------------------------------- tag schemes and span metrics
def test_span_f1_equals_seqeval_on_random_sequences():
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    from nlpkit.metrics.spans import span_counts, span_report

    rng = random.Random(0)
    for prefixes in ("BI", "BIES"):
        gold = [random_tags(rng, rng.randint(1, 12), prefixes) for _ in range(300)]
        pred = [random_tags(rng, len(g), prefixes) for g in gold]
        for seq in gold[:100]:
            assert spans(seq) == get_entities(seq)
        overall = span_report(*span_counts(zip(gold, pred)))["overall"]
        assert overall["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)
        assert overall["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
        assert overall["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)
        assert span_f1(gold, gold) == 1.0


def test_iob1_conversion_keeps_conlleval_spans_and_gives_valid_bio():
    rng = random.Random(1)
    for _ in range(300):
        tags = random_tags(rng, rng.randint(1, 10), "BI")
        bio = iob1_to_bio(tags)
        assert spans(bio) == spans(tags)
        assert check_tags(bio, "BIO") is None
    assert iob1_to_bio(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]) == [
        "B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG",
    ]  # fmt: skip


def test_check_tags_rules():
    assert check_tags(["O", "I-PER"], "BIO")[0] == 1
    assert check_tags(["B-LOC", "I-PER"], "BIO")[0] == 1
    assert check_tags(["I-PER", "I-PER"], "IOB1") is None
    assert check_tags(["B-PER", "E-PER", "S-LOC", "O"], "BIOES") is None
    assert check_tags(["B-PER", "O"], "BIOES")[0] == 1
    assert check_tags(["B-PER"], "BIOES") is not None
    assert check_tags(["PER"], "BIO")[0] == 0


# ---------------------------------------------------------------- CRF
def brute_force(crf: CRFOutput, emissions: torch.Tensor, length: int) -> tuple[torch.Tensor, list[int]]:
    labels = emissions.size(-1)
    scores, paths = [], []
    for path in itertools.product(range(labels), repeat=length):
        tags = torch.tensor([list(path)])
        mask = torch.ones(1, length, dtype=torch.bool)
        scores.append(crf.sequence_score(emissions[:, :length], tags, mask)[0])
        paths.append(list(path))
    scores = torch.stack(scores)
    return torch.logsumexp(scores, 0), paths[int(scores.argmax())]


@pytest.mark.parametrize("constrained", [False, True])
def test_crf_forward_algorithm_and_viterbi_equal_brute_force(constrained):
    torch.manual_seed(0)
    names = ["O", "B-X", "I-X", "B-Y", "I-Y"][: 5 if constrained else 4]
    crf = CRFOutput(len(names), allowed_transitions(names, "BIO"), constrained=constrained)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    lengths = torch.tensor([5, 3, 1])
    emissions = torch.randn(3, 5, len(names)) * 2
    mask = sequence_mask(torch.zeros(3, 5), lengths)
    log_z = crf.log_partition(emissions, mask)
    best = crf.decode(emissions, mask)
    for row, n in enumerate(lengths.tolist()):
        expected_z, expected_path = brute_force(crf, emissions[row : row + 1], n)
        assert log_z[row].item() == pytest.approx(expected_z.item(), abs=1e-4)
        assert best[row, :n].tolist() == expected_path
        assert best[row, n:].eq(0).all()
        if constrained:
            assert check_tags([names[i] for i in expected_path], "BIO") is None
    # Padding must not change anything: the same sentence in a longer batch gives the same numbers.
    padded = torch.cat([emissions, torch.randn(3, 4, len(names))], dim=1)
    mask2 = sequence_mask(torch.zeros(3, 9), lengths)
    assert torch.allclose(crf.log_partition(padded, mask2), log_z, atol=1e-5)
    assert torch.equal(crf.decode(padded, mask2)[:, :5], best)


def test_crf_bioes_constraints_decode_valid_sequences():
    names = ["O", "B-X", "I-X", "E-X", "S-X"]
    crf = CRFOutput(len(names), allowed_transitions(names, "BIOES"), constrained=True)
    emissions = torch.randn(64, 6, len(names)) * 3
    decoded = crf.decode(emissions, torch.ones(64, 6, dtype=torch.bool))
    for row in decoded.tolist():
        assert check_tags([names[i] for i in row], "BIOES") is None


# ---------------------------------------------------------------- model
def test_every_trainable_parameter_gets_a_gradient(tmp_path):
    cfg = validate(compose(tmp_path, "model.decoder.hidden_dims=[8]"))
    names = ["O", "B-X", "I-X", "B-Y", "I-Y"]
    model = build_word_tagger(
        cfg.model, vocab_size=30, pad_id=0, num_chars=20, num_shapes=9, label_names=names, tag_scheme="BIO"
    )
    assert set(model.embedding.components) == {"word", "char", "shape"}
    lengths = torch.tensor([6, 4, 2])
    tokens = torch.randint(1, 30, (3, 6)) * sequence_mask(torch.zeros(3, 6), lengths)
    chars = torch.randint(1, 20, (3, 6, 5))
    chars[:, :, 3:] = 0
    chars[tokens == 0] = 0
    shapes = torch.randint(1, 9, (3, 6)) * (tokens != 0)
    tags = torch.tensor([[1, 2, 0, 3, 4, 0], [0, 1, 2, 0, 0, 0], [3, 0, 0, 0, 0, 0]])
    emissions = model({"tokens": tokens, "lengths": lengths, "chars": chars, "shapes": shapes})["emissions"]
    assert emissions.shape == (3, 6, len(names))
    model.output.loss(emissions, tags, sequence_mask(tokens, lengths)).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, name


def test_unknown_key_in_tagging_data_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.tag_colum"):
        validate(compose(tmp_path, "+data.tag_colum=2"))
    with pytest.raises(ConfigError, match="tag_scheme"):
        validate(compose(tmp_path, "data.tag_scheme=IOB2"))


def test_bseqcnn_states_ignore_batch_padding_and_see_their_context_window():
    torch.manual_seed(0)
    encoder = BSeqCNNRepresentation(6, num_filters=5, context=3, num_layers=2, dropout=0.0).eval()
    assert encoder.output_dim == 10
    embedded = torch.randn(2, 9, 6)
    lengths = torch.tensor([9, 4])
    mask = sequence_mask(torch.zeros(2, 9), lengths)
    with torch.no_grad():
        states = encoder(embedded, mask)
        alone = encoder(embedded[1:, :4], mask[1:, :4])  # the short sentence without the batch's padding
        assert torch.allclose(states[1, :4], alone[0], atol=1e-6)
        assert states[1, 4:].abs().max() == 0
        moved = embedded.clone()
        moved[0, 8] += 10.0  # the last token: only tokens within 2 layers x 2 neighbours can change
        changed = (encoder(moved, mask) - states)[0].abs().amax(-1) > 0
    assert not changed[:4].any() and changed[8]
    assert changed[4:8].any()  # the future view reaches back 4 tokens


# ---------------------------------------------------------------- training end to end
@pytest.fixture(scope="module", params=list(ENCODERS))
def builtin_run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"builtin_{request.param}")
    cfg = compose(
        tmp, "debug=fast", "trainer.limit_train_batches=10", "data.eval_batch_size=512", encoder=request.param
    )
    assert cfg.task.monitor == "val/span_f1"
    result = nlpkit.train(cfg)
    return cfg, result


def test_builtin_training_writes_span_metrics_and_report(builtin_run):
    cfg, result = builtin_run
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "val/span_f1",
        "test/span_f1",
        "test/span_precision",
        "test/span_recall",
        "test/token_accuracy",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    report = json.loads((run_dir / "span_report.json").read_text())
    assert report["test"]["overall"]["f1"] == pytest.approx(metrics["test/span_f1"])
    assert {"time", "city"} <= set(report["test"])
    assert {"tokenizer.json", "chars.json", "labels.json"} <= {p.name for p in run_dir.iterdir()}


def test_load_predicts_identically_and_reproduces_test_span_f1(builtin_run):
    cfg, result = builtin_run
    run_dir = result["run_dir"]
    test = [json.loads(line) for line in Path(cfg.data.test_path).read_text().splitlines()]
    texts = [" ".join(ex["tokens"]) for ex in test]
    first = nlpkit.load(run_dir).predict(texts)
    again = nlpkit.load(run_dir).predict(texts[:60], batch_size=7)  # other padding, fresh load
    assert first[:60] == again
    assert all(len(p["tags"]) == len(p["tokens"]) == len(ex["tokens"]) for p, ex in zip(first, test))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert span_f1([ex["slots"] for ex in test], [p["tags"] for p in first]) == pytest.approx(
        metrics["test/span_f1"], abs=1e-9
    )
    # Restoring the run gives the same model as the predictor.
    dm, module = get_task("tagging").restore(OmegaConf.load(Path(run_dir) / "config.yaml"), Path(run_dir))
    dm.load()
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        decoded = module.model.decode(batch)
    names = [
        [dm.labels.names[i] for i in row[:n]] for row, n in zip(decoded.tolist(), batch["lengths"].tolist())
    ]
    assert names == [p["tags"] for p in first[: len(names)]]
    with pytest.raises(EmptyTextError, match=r"texts\[0\] is empty"):  # one rule for every backend
        nlpkit.load(run_dir).predict(["", "wake me up at 7 am"])


CONLL = """-DOCSTART- -X- O O

John NNP I-NP I-PER
Smith NNP I-NP I-PER
lives VBZ I-VP O
in IN I-PP O
New NNP I-NP I-LOC
York NNP I-NP I-LOC
. . O O

-DOCSTART- -X- O O

Mary NNP I-NP I-PER
visited VBD I-VP O
Paris NNP I-NP I-LOC
and CC O O
Berlin NNP I-NP I-LOC
Acme NNP I-NP I-ORG
Corp NNP I-NP I-ORG
hired VBD I-VP O
Mary NNP I-NP I-PER
Anne NNP I-NP B-PER
. . O O

-DOCSTART- -X- O O"""


def write_conll(directory: Path, text: str = CONLL) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "train.conll"
    path.write_text(text)
    return path


def test_conll_training_learns_iob1_data_and_round_trips(tmp_path):
    path = write_conll(tmp_path / "data")
    train = write_conll(tmp_path / "train", "\n\n".join([CONLL] * 10))  # 20 sentences
    cfg = compose(
        tmp_path,
        "data=conll",
        f"data.train_path={train}",
        f"data.val_path={path}",
        f"data.test_path={path}",
        "data.tag_scheme=IOB1",
        "data.batch_size=2",
        "trainer.max_epochs=5",
        "callbacks.early_stopping=null",
        "optim.lr=0.02",
        "model.representation.dropout=0.0",
    )
    result = nlpkit.train(cfg)
    labels = json.loads((Path(result["run_dir"]) / "labels.json").read_text())["labels"]
    assert labels == ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]  # IOB1 read as BIO
    assert result["metrics"]["test/span_f1"] >= 0.9
    predicted = nlpkit.load(result["run_dir"]).predict(["John Smith lives in New York ."])[0]
    assert predicted["tokens"] == ["John", "Smith", "lives", "in", "New", "York", "."]
    assert len(predicted["tags"]) == 7


def test_parallel_files_train(tmp_path):
    split = tmp_path / "atis" / "train"
    split.mkdir(parents=True)
    (split / "seq.in").write_text("fly from boston to denver\nshow flights to dallas\nfrom new york\n")
    (split / "seq.out").write_text("O O B-fromloc O B-toloc\nO O O B-toloc\nO B-fromloc I-fromloc\n")
    cfg = compose(
        tmp_path, "data=parallel", f"data.train_path={split}", f"data.val_path={split}", "debug=fast"
    )
    result = nlpkit.train(cfg)
    assert "val/span_f1" in result["metrics"]
    assert "test/span_f1" not in result["metrics"]  # no test split configured
    assert len(nlpkit.load(result["run_dir"]).predict(["fly to boston"])[0]["tags"]) == 3


# ---------------------------------------------------------------- bad data
def read(path, policy="error", **data):
    cfg = OmegaConf.merge(
        OmegaConf.structured(get_task("tagging").data_schema), {"on_bad_row": policy, **data}
    )
    bad = BadRowPolicy(policy)
    return read_tagged(path, cfg, bad), bad


def test_conll_bad_rows_name_file_and_line(tmp_path):
    path = write_conll(tmp_path, CONLL.replace("Paris NNP I-NP I-LOC", "Paris"))
    with pytest.raises(DataError, match=rf"{path}:15: token/tag count mismatch"):
        read(path, format="conll", tag_scheme="IOB1")
    sentences, policy = read(path, "skip", format="conll", tag_scheme="IOB1")
    assert len(sentences) == 1 and policy.total_skipped == 1
    # Under BIO the IOB1 file's leading I-PER is an I- without B-.
    with pytest.raises(DataError, match=rf"{path}:3: bad tag: 'I-PER' .*I- without B-"):
        read(write_conll(tmp_path), format="conll", tag_scheme="BIO")
    sentences, policy = read(write_conll(tmp_path), "skip", format="conll", tag_scheme="BIO")
    assert sentences == [] and policy.total_skipped == 2
    assert policy.skipped["bad tag"] == 2
    # An undecodable line is a bad row, and its sentence goes with it (no silently shortened sentence).
    broken = tmp_path / "utf8.conll"
    broken.write_bytes(b"A x O\nB\xff x O\nC x O\n\nD x O\n")
    with pytest.raises(DataError, match=rf"{broken}:2: invalid UTF-8"):
        read(broken, format="conll")
    sentences, policy = read(broken, "skip", format="conll")
    assert [s.tokens for s in sentences] == [("D",)] and policy.total_skipped == 1
    # -DOCSTART- anywhere (even mid-sentence, without blank lines) is dropped and ends the sentence.
    mid = write_conll(tmp_path, "A x O\n-DOCSTART- -X- O O\nB x O\n")
    sentences, _ = read(mid, format="conll")
    assert [s.tokens for s in sentences] == [("A",), ("B",)]
    assert sentences[1].origin.endswith(":3")


def test_parallel_and_jsonl_bad_rows(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    (split / "seq.in").write_text("a b c\n\nd e\n")
    (split / "seq.out").write_text("O O O\nO\nO B-X O\n")
    with pytest.raises(DataError, match=rf"{split / 'seq.in'}:2: empty sentence"):
        read(split, format="parallel")
    sentences, policy = read(split, "skip", format="parallel")
    assert len(sentences) == 1 and policy.total_skipped == 2
    assert set(policy.skipped) == {"empty sentence", "token/tag count mismatch"}
    (split / "seq.out").write_text("O O O\n")
    with pytest.raises(DataError, match="has 3 lines but .*seq.out has 1"):
        read(split, format="parallel")
    path = tmp_path / "x.jsonl"
    path.write_text('{"tokens": ["a", "b"], "slots": ["O", "I-X"]}\n{"tokens": [], "slots": []}\n')
    with pytest.raises(DataError, match=rf"{path}:1: bad tag"):
        read(path, format="jsonl")
    sentences, policy = read(path, "skip", format="jsonl")
    assert sentences == [] and policy.total_skipped == 2


def test_skip_policy_reports_counted_rows_in_metrics(tmp_path):
    path = write_conll(tmp_path / "data", CONLL.replace("Paris NNP I-NP I-LOC", "Paris"))
    cfg = compose(
        tmp_path,
        "data=conll",
        f"data.train_path={path}",
        f"data.val_path={write_conll(tmp_path / 'val')}",
        "data.tag_scheme=IOB1",
        "data.on_bad_row=skip",
        "debug=fast",
    )
    assert nlpkit.train(cfg)["metrics"]["data/skipped_rows"] == 1


def test_singleton_words_are_replaced_by_unk_only_in_training(tmp_path):
    from nlpkit.tasks.tagging.data import TaggingDataModule

    path = write_conll(tmp_path)  # "Mary" occurs twice, "John" once
    cfg = validate(
        compose(
            tmp_path, "data=conll", f"data.train_path={path}", f"data.val_path={path}", "data.tag_scheme=IOB1"
        )
    )
    cfg.data.unk_replace_prob = 1.0
    dm = TaggingDataModule(cfg.data)
    dm.load()
    unk, words = dm.featurizer.unk_id, dm.featurizer.words
    train = torch.cat([b["tokens"].flatten() for b in dm.train_dataloader()])
    val = torch.cat([b["tokens"].flatten() for b in dm.val_dataloader()])
    assert words.word_id("John") in val.tolist() and words.word_id("John") not in train.tolist()
    assert words.word_id("Mary") in train.tolist()
    assert unk in train.tolist() and unk not in val.tolist()


class TestTaggingContract(TaskCase):
    """``task=tagging`` (BiLSTM-CRF over word + char + casing, built-in data) keeps the contract."""

    overrides = ("task=tagging", *WORD_TINY)
    test_metrics = ("test/span_f1", "test/token_accuracy")
    label_keys = ("tags",)
