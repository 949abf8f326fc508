"""task=semantic_parse (nlpkit/tasks/semantic_parse/): TOP trees, the oracle, the valid-action mask,
bad-row handling, the metrics, and the shared task contract (train -> save -> load -> same trees)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

import nlpkit
from nlpkit.data.readers import BadRowPolicy
from nlpkit.errors import DataError
from nlpkit.tasks.semantic_parse.data import ActionVocab, read_top
from nlpkit.tasks.semantic_parse.metrics import TreeMetrics
from nlpkit.tasks.semantic_parse.model import RNNGParser, valid_actions
from nlpkit.tasks.semantic_parse.tree import (
    REDUCE,
    SHIFT,
    ParserState,
    TreeError,
    build_tree,
    oracle,
    parse_tree,
)
from tests.conftest import SHARED_DATA
from tests.task_case import TaskCase

TOP = SHARED_DATA / "top_v1"
needs_top = pytest.mark.skipif(not (TOP / "train.tsv").is_file(), reason=f"TOP v1 not found at {TOP}")

TREE = "[IN:GET_ETA how long to [SL:DESTINATION [IN:GET_LOCATION [SL:CATEGORY the beach ] ] ] ]"
TREES = [
    ("what is the weather", "[IN:GET_WEATHER what is the weather ]"),
    (
        "how long to the beach",
        "[IN:GET_ETA how long to [SL:DESTINATION [IN:GET_LOCATION [SL:CATEGORY the beach ] ] ] ]",
    ),
    ("traffic to work now", "[IN:GET_TRAFFIC traffic to [SL:DESTINATION work ] [SL:DATE now ] ]"),
    ("is it raining in paris", "[IN:GET_WEATHER is it raining in [SL:LOCATION paris ] ]"),
]


def write_top(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{text}\t{text}\t{tree}\n" for text, tree in rows))
    return path


# ---------------------------------------------------------------- trees and the oracle
def test_oracle_and_build_tree_round_trip_a_nested_tree():
    tree = parse_tree(TREE)
    actions = oracle(tree)
    assert actions[:3] == ["IN:GET_ETA", SHIFT, SHIFT]
    assert actions.count(REDUCE) == 4 and actions.count(SHIFT) == 5
    assert str(build_tree(actions, tree.tokens(), max_open=10)) == TREE
    assert tree.brackets() == [
        ("IN:GET_ETA", 0, 5), ("SL:DESTINATION", 3, 5), ("IN:GET_LOCATION", 3, 5), ("SL:CATEGORY", 3, 5)
    ]  # fmt: skip


@needs_top
def test_oracle_round_trips_every_training_tree_of_top_v1():
    rows = (TOP / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 31279
    for number, row in enumerate(rows, start=1):
        _, tokenized, text = row.split("\t")
        tree = parse_tree(text)
        tokens = tokenized.split()
        assert tree.tokens() == tokens, number
        assert str(build_tree(oracle(tree), tokens, max_open=10)) == text, number


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[IN:A x [SL:B y ]", "never closed"),
        ("[IN:A x ] ]", "after the root closed"),
        ("[SL:A x ]", "root must be an intent"),
        ("[IN:A [IN:B x ] ]", "intents contain slots"),
        ("[IN:A x [SL:B [SL:C y ] ] ]", "slots contain intents"),
        ("[IN:A x [SL:B ] ]", "contains no token"),
        ("[XX:A x ]", "neither an intent"),
        ("x [IN:A y ]", "must start with an intent"),
    ],
)
def test_bad_trees_are_refused_with_the_reason(text, problem):
    with pytest.raises(TreeError, match=problem):
        parse_tree(text)


def test_a_tree_deeper_than_max_open_is_refused():
    parse_tree(TREE, max_open=4)
    with pytest.raises(TreeError, match="limit is 3"):
        parse_tree(TREE, max_open=3)


def test_build_tree_refuses_actions_the_rules_forbid():
    tokens = ["a", "b"]
    with pytest.raises(TreeError, match="SHIFT not allowed"):
        build_tree([SHIFT], tokens, 10)  # nothing open yet
    with pytest.raises(TreeError, match="REDUCE not allowed"):
        build_tree(["IN:A", REDUCE], tokens, 10)  # an empty non-terminal
    with pytest.raises(TreeError, match="REDUCE not allowed"):
        build_tree(["IN:A", SHIFT, REDUCE], tokens, 10)  # the root closes with a token left
    with pytest.raises(TreeError, match="not allowed"):
        build_tree(["IN:A", "IN:B"], tokens, 10)  # an intent directly in an intent
    with pytest.raises(TreeError, match="before the root closed"):
        build_tree(["IN:A", SHIFT, SHIFT], tokens, 10)


# ---------------------------------------------------------------- bad rows name file:line, or are counted
def test_bad_rows_are_file_line_errors_or_counted_skips(tmp_path):
    rows = [
        "a b\ta b\t[IN:X a [SL:Y b ] ]",
        "a b\ta b\t[SL:Y a b ]",  # a slot at the root
        "a b\ta b\t[IN:X a [SL:Y b ]",  # unbalanced
        "a b\ta c\t[IN:X a b ]",  # terminals differ from the tokenized utterance
        "a b\t[IN:X a b ]",  # two columns
    ]
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=rf"{path}:2: bad tree: the root must be an intent"):
        read_top(path, 10, BadRowPolicy("error"))
    policy = BadRowPolicy("skip")
    kept = read_top(path, 10, policy)
    assert [e.origin for e in kept] == [f"{path}:1"]
    assert policy.total_skipped == 4
    assert (
        "tree tokens differ from the utterance: at token 2 the tree has 'b', the utterance 'c'"
        in policy.report()
    )


# ---------------------------------------------------------------- the valid-action mask
ACTIONS = ActionVocab.from_labels({"IN:A", "IN:B", "SL:X", "SL:Y"})


def _tiny_parser(max_open: int, seed: int = 0) -> RNNGParser:
    from nlpkit.modules.embedding import WordEmbedding
    from nlpkit.modules.representation.token_bilstm import TokenBiLSTMRepresentation

    torch.manual_seed(seed)
    embedding = WordEmbedding(vocab_size=20, embed_dim=6, padding_idx=0)
    return RNNGParser(
        embedding,
        TokenBiLSTMRepresentation(6, 5, dropout=0.0),
        ACTIONS.nt_kinds,
        8,
        4,
        8,
        "bilstm",
        max_open,
        0.0,
    ).eval()


class RandomScores(torch.nn.Module):
    """Stands in for the parser's scorer: a fresh random score vector per example and step."""

    def __init__(self, n_actions: int, seed: int):
        super().__init__()
        self.n_actions = n_actions
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.randn(features.size(0), self.n_actions, generator=self.generator) * 5


def _state_mask(state: ParserState) -> list[bool]:
    shift, reduce, intent, slot = state.allowed()
    return [shift, reduce, *(intent if kind == "intent" else slot for kind in ACTIONS.nt_kinds)]


@pytest.mark.parametrize("max_open", [1, 2, 4])
def test_greedy_decoding_under_the_mask_always_builds_a_well_formed_tree(max_open):
    """Property test over seeded random score vectors: whatever the scores, every decoded sequence is
    a valid TOP tree over exactly the input tokens, and the batched mask agrees with ParserState."""
    rng = random.Random(max_open)
    parser = _tiny_parser(max_open)
    for trial in range(25):
        lengths = torch.tensor([rng.randint(1, 7) for _ in range(6)])
        tokens = torch.randint(1, 20, (6, int(lengths.max())))
        batch = {"tokens": tokens, "lengths": lengths}
        parser.scorer = RandomScores(len(ACTIONS), seed=trial)
        for row, ids in enumerate(parser.decode(batch)):
            words = [f"w{i}" for i in range(int(lengths[row]))]
            names = [ACTIONS.names[i] for i in ids]
            tree = build_tree(names, words, max_open)  # raises if the mask let an invalid action through
            assert tree.tokens() == words and tree.is_intent


def test_the_batched_mask_equals_the_rules_at_every_step_of_random_valid_parses():
    rng = random.Random(0)
    sequences, lengths = [], []
    for _ in range(8):  # random valid action sequences, drawn with ParserState
        n = rng.randint(1, 6)
        state, actions = ParserState(n, 3), []
        while not state.finished:
            mask = _state_mask(state)
            choice = rng.choice([i for i, ok in enumerate(mask) if ok])
            actions.append(choice)
            state.apply(ACTIONS.names[choice])
        sequences.append(actions)
        lengths.append(n)
    parser = _tiny_parser(3)
    lengths_t = torch.tensor(lengths)
    states = torch.zeros(len(lengths), max(lengths), parser.representation.output_dim)
    stacks, _ = parser._start(states)
    replay = [ParserState(n, 3) for n in lengths]
    for step in range(max(map(len, sequences))):
        got = valid_actions(stacks, lengths_t, parser.nt_is_intent, 3)
        action = torch.tensor([seq[step] if step < len(seq) else 0 for seq in sequences])
        active = torch.tensor([step < len(seq) for seq in sequences])
        for row, state in enumerate(replay):
            if active[row]:
                assert got[row].tolist() == _state_mask(state), (row, step)
                state.apply(ACTIONS.names[sequences[row][step]])
        parser._take(states, stacks, action, active)
    assert bool(stacks.finished.all())


# ---------------------------------------------------------------- beam search
def _valid_sequences(n_tokens: int, max_open: int) -> list[list[int]]:
    """Every valid action-id sequence over ``n_tokens`` tokens (depth-first over ``ParserState``)."""
    found: list[list[int]] = []

    def extend(prefix: list[int]) -> None:
        state = ParserState(n_tokens, max_open)
        for action in prefix:
            state.apply(ACTIONS.names[action])
        if state.finished:
            found.append(prefix)
            return
        for action, ok in enumerate(_state_mask(state)):
            if ok:
                extend([*prefix, action])

    extend([])
    return found


def _log_prob(parser: RNNGParser, tokens: torch.Tensor, sequences: list[list[int]]) -> list[float]:
    """Each sequence's log-probability under the parser (teacher forcing: the training objective)."""
    n = len(sequences)
    width = max(map(len, sequences))
    forced = torch.tensor([seq + [0] * (width - len(seq)) for seq in sequences])
    batch = {
        "tokens": tokens.expand(n, -1),
        "lengths": torch.full((n,), tokens.size(1)),
        "forced": forced,
        "action_lengths": torch.tensor([len(seq) for seq in sequences]),
    }
    with torch.no_grad():
        log_probs = parser(batch)["action_scores"].log_softmax(-1).gather(2, forced.unsqueeze(2)).squeeze(2)
    steps = torch.arange(width).unsqueeze(0) < batch["action_lengths"].unsqueeze(1)
    return (log_probs * steps).sum(1).tolist()


@pytest.mark.parametrize("n_tokens", [1, 2, 3])  # 6, 22, 82 valid parses; greedy misses the best of 2
def test_a_beam_wide_enough_to_keep_every_hypothesis_finds_the_most_probable_parse(n_tokens):
    """Exhaustive check: with a beam as wide as the number of valid sequences, beam search returns the
    argmax over every valid parse (scored by teacher forcing) and its log-probability."""
    parser = _tiny_parser(max_open=2, seed=n_tokens)
    tokens = torch.randint(1, 20, (1, n_tokens), generator=torch.Generator().manual_seed(n_tokens))
    sequences = _valid_sequences(n_tokens, 2)
    scores = _log_prob(parser, tokens, sequences)
    best = max(range(len(sequences)), key=scores.__getitem__)
    batch = {"tokens": tokens, "lengths": torch.tensor([n_tokens])}
    (found,), (found_score,) = parser.beam_decode(batch, beam_size=len(sequences))
    assert found == sequences[best]
    assert math.isclose(found_score, scores[best], abs_tol=1e-4)
    greedy = parser.decode(batch, beam_size=1)[0]
    assert scores[best] >= _log_prob(parser, tokens, [greedy])[0] - 1e-6


def test_beam_of_one_is_greedy_and_every_beam_builds_well_formed_trees():
    """``beam_decode`` with one hypothesis reproduces greedy decoding; with more, under random score
    vectors (dead hypotheses, finished ones carried along, batch rows of other lengths), every result
    is still a valid tree over the input tokens."""
    rng = random.Random(0)
    parser = _tiny_parser(3, seed=1)
    lengths = torch.tensor([rng.randint(1, 7) for _ in range(6)])
    batch = {"tokens": torch.randint(1, 20, (6, int(lengths.max()))), "lengths": lengths}
    assert parser.beam_decode(batch, 1)[0] == parser.decode(batch)
    for trial in range(10):
        parser.scorer = RandomScores(len(ACTIONS), seed=trial)
        for beam in (2, 5):
            for row, ids in enumerate(parser.decode(batch, beam_size=beam)):
                words = [f"w{i}" for i in range(int(lengths[row]))]
                tree = build_tree([ACTIONS.names[i] for i in ids], words, 3)
                assert tree.tokens() == words and tree.is_intent


# ---------------------------------------------------------------- metrics
def test_tree_metrics_match_a_hand_count():
    metric = TreeMetrics()
    gold = ["[IN:A x [SL:X y ] ]", "[IN:B x y ]", "[IN:A x y ]"]
    predicted = [parse_tree("[IN:A x [SL:X y ] ]"), parse_tree("[IN:A x [SL:Y y ] ]"), None]
    metric.update(gold, predicted)
    # brackets: gold 2 + 1 + 1 = 4; predicted 2 + 2 = 4; matched 2 (tree 1)
    values = metric.compute()
    assert values["exact_match"] == pytest.approx(1 / 3)
    assert values["intent_accuracy"] == pytest.approx(1 / 3)
    assert values["well_formed"] == pytest.approx(2 / 3)
    assert values["bracket_precision"] == pytest.approx(2 / 4)
    assert values["bracket_recall"] == pytest.approx(2 / 4)
    assert values["bracket_f1"] == pytest.approx(0.5)


# ---------------------------------------------------------------- the task contract, on generated TOP data
def generated_top(seed: int, size: int) -> list[tuple[str, str]]:
    """TOP rows from templates: flat intents, two slots, and a slot holding a nested intent."""
    rng = random.Random(seed)
    places, days, things = (
        ["paris", "rome", "oslo", "lima"],
        ["today", "tomorrow", "tonight"],
        ["beach", "mall", "gym"],
    )
    rows = []
    for _ in range(size):
        place, day, thing = rng.choice(places), rng.choice(days), rng.choice(things)
        kind = rng.randrange(4)
        if kind == 0:
            rows.append(
                (
                    f"weather in {place} {day}",
                    f"[IN:GET_WEATHER weather in [SL:LOCATION {place} ] [SL:DATE {day} ] ]",
                )
            )
        elif kind == 1:
            rows.append((f"is it cold {day}", f"[IN:GET_WEATHER is it cold [SL:DATE {day} ] ]"))
        elif kind == 2:
            tree = (
                f"[IN:GET_ETA how long to [SL:DESTINATION [IN:GET_LOCATION the [SL:CATEGORY {thing} ] ] ] ]"
            )
            rows.append((f"how long to the {thing}", tree))
        else:
            rows.append((f"tell me a joke {day}", "[IN:UNSUPPORTED tell me a joke " + day + " ]"))
    return rows


#: texts the parser contracts predict on: flat, nested, a longer one, one word
PARSE_TEXTS = (
    "weather in paris today",
    "how long to the gym",
    "is it cold tonight and will it rain in oslo",
    "hello",
)


class TestSemanticParseTask(TaskCase):
    overrides = (
        "task=semantic_parse",
        "model.embedding.components.word.embed_dim=8",
        "model.embedding.components.char.char_dim=4",
        "model.embedding.components.char.kernel_sizes=[2]",
        "model.embedding.components.char.num_filters=4",
        "model.embedding.components.shape.embed_dim=2",
        "model.representation.hidden_dim=8",
        "model.stack_dim=8",
        "model.action_dim=4",
        "model.hidden_dim=8",
        "data.batch_size=8",
    )
    texts = PARSE_TEXTS
    test_metrics = tuple(
        f"test/{name}"
        for name in (
            "exact_match",
            "bracket_precision",
            "bracket_recall",
            "bracket_f1",
            "intent_accuracy",
            "well_formed",
        )
    )

    @pytest.fixture(scope="class")
    def run(self, tmp_path_factory, builtin_dir):
        data = tmp_path_factory.mktemp("top_data")
        files = {
            split: write_top(data / f"{split}.tsv", generated_top(i, n))
            for i, (split, n) in enumerate([("train", 48), ("eval", 12), ("test", 12)])
        }
        paths = [
            f"data.{key}_path={files[split]}"
            for key, split in (("train", "train"), ("val", "eval"), ("test", "test"))
        ]
        cfg = nlpkit.compose([*self.overrides, *paths, *self.trainer], output_dir=str(data / "run"))
        return {**nlpkit.train(cfg), "cfg": cfg, "files": files}

    def test_every_prediction_is_a_well_formed_tree_over_the_tokens(self, run):
        trees = nlpkit.load(run["run_dir"]).predict(list(self.texts))
        for text, tree in zip(self.texts, trees):
            assert parse_tree(tree).tokens() == text.split()
        assert run["metrics"]["test/well_formed"] == 1.0

    def test_beam_search_through_the_loaded_run(self, run):
        """``predict(texts, beam_size=K)`` on a reloaded run: K = 1 is greedy, K = 4 gives well-formed
        trees over the tokens, K = 0 is refused (optimality is the exhaustive test's, above)."""
        predictor = nlpkit.load(run["run_dir"])
        greedy = predictor.predict(list(self.texts))
        assert predictor.predict(list(self.texts), beam_size=1) == greedy
        beam = predictor.predict(list(self.texts), beam_size=4)
        for text, tree in zip(self.texts, beam):
            assert parse_tree(tree).tokens() == text.split()
        with pytest.raises(ValueError, match="beam_size=0: must be >= 1"):
            predictor.predict(list(self.texts), beam_size=0)

    def test_export_passes_the_gate_and_serves_the_same_labels(self, run, capsys, monkeypatch):
        """No ONNX file: the export is the C++ parser's folder (tests/test_semantic_parse_native.py builds
        the binary and checks its trees); without the binary ``python -m nlpkit.export`` says to build it."""
        from nlpkit.export.__main__ import main

        monkeypatch.setenv("NLPKIT_RNNG_BINARY", str(Path(run["run_dir"]) / "no-such-binary"))
        assert main([f"run_dir={run['run_dir']}"]) == 1
        assert "is not built: run `make native`" in capsys.readouterr().err
        assert not (Path(run["run_dir"]) / "export" / "model.onnx").exists()
        assert not (Path(run["run_dir"]) / "export" / "native").exists()


def test_the_cli_trains_on_a_top_file_and_predicts_trees(tmp_path):
    """``python -m nlpkit.train task=semantic_parse`` on a file by overrides alone, then the predict CLI's
    file path (one JSON line per text, the tree under ``prediction``)."""
    import json

    from nlpkit.predict import predict_file
    from tests.conftest import run_module

    train = write_top(tmp_path / "train.tsv", generated_top(5, 32))
    run_dir = tmp_path / "run"
    run_module(
        "nlpkit.train",
        [
            *TestSemanticParseTask.overrides,
            f"data.train_path={train}",
            "data.val_path=null",  # held out of train instead
            "data.test_path=null",
            "data.val_fraction=0.25",
            "debug=fast",
            "logger=csv",
            f"hydra.run.dir={run_dir}",
        ],
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/well_formed"] == 1.0 and "test/exact_match" not in metrics  # no test file given
    texts = tmp_path / "texts.txt"
    texts.write_text("weather in rome tonight\nhow long to the mall\n")
    assert predict_file(run_dir, texts, tmp_path / "out.jsonl") == 2
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [parse_tree(line["prediction"]).tokens() for line in lines] == [
        t.split() for t in texts.read_text().splitlines()
    ]
