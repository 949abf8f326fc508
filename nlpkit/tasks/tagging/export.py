"""Word-level export (tagging, joint intent-slot, intent-only): raw text in; tags and/or the intent out.

``task=tagging``: ``text [batch]`` -> ``tokens``, ``tags`` (string ``[batch, max_tokens]``, "" at padding).
``task=intent_slot``: also ``intent`` (string ``[batch]``, "" for a text without tokens) and
``intent_scores`` (float ``[batch, n_intents]``, softmax; zeros for a text without tokens); the tags
output is then named ``slots``.
``task=intent``: ``intent`` and ``intent_scores`` only (as ``intent_slot``'s), no tokens or tags.

One sub-task of a ``task=multitask`` run (``subtask=NAME``) is exported the same way as the single
task of its kind: its model (the shared modules + its own heads) and its vocabularies from
``tasks/<name>/``, checked on its own test split.

In the graph: whitespace tokenization, word/character/casing features (:mod:`nlpkit.export.word_graph`),
the network, argmax or CRF Viterbi decoding (:mod:`nlpkit.export.decoding`) and the label names.
The gate compares every feature the model sees with the Python featurizer (every code point, the
test split, edge cases, the vocabularies) and the decoded output with the PyTorch predictor at batch
1 and a mixed-length batch, before anything is written.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export import graph as G
from nlpkit.export.decoding import build_argmax_tags, build_viterbi_tags
from nlpkit.export.parity import (
    EDGE_CASES,
    MIXED_BATCH,
    SCORE_TOLERANCE,
    accept_model,
    first_few,
    gate_report,
    provenance_metadata,
)
from nlpkit.export.text_graph import GraphBuilder, all_characters, read_tokenizer_spec
from nlpkit.export.word_graph import WordFeatureNames, WordFeatureSpec, build_word_nodes
from nlpkit.tasks.tagging.data import CHARS_FILE, TOKENIZER_FILE
from nlpkit.utils.io import sha256_file

NETWORK_INPUTS = ("tokens", "lengths", "chars", "shapes")


@dataclass
class Setup:
    """What the graph is built from and checked against."""

    task: str  # "tagging", "intent_slot" or "intent"
    predictor: Any  # TaggingPredictor, IntentSlotPredictor or IntentPredictor
    spec: WordFeatureSpec
    tag_names: list[str]  # [] for task=intent (no tags output)
    intent_names: list[str] | None  # None for task=tagging
    decoding: str | None  # "crf_viterbi" or "argmax"; None for task=intent
    data_cfg: Any  # the data section (a multi-task run: the sub-task's)
    vocab_dir: Path  # where tokenizer.json and chars.json are (a multi-task run: tasks/<name>/)
    subtask: str | None = None  # the sub-task's name in a multi-task run

    @property
    def has_tags(self) -> bool:
        return self.task != "intent"

    @property
    def has_intent(self) -> bool:
        return self.task != "tagging"

    @property
    def tags_output(self) -> str:
        return "slots" if self.task == "intent_slot" else "tags"

    @property
    def outputs(self) -> list[str]:
        """The graph's outputs, in order."""
        return (["intent", "intent_scores"] if self.has_intent else []) + (
            ["tokens", self.tags_output] if self.has_tags else []
        )


# ---------------------------------------------------------------------------------- network
def _network_module(model, task: str):
    """``(tokens, lengths, chars, shapes) -> emissions`` (tagging), ``-> (intent_scores, emissions)``
    (intent_slot) or ``-> intent_scores`` (intent)."""
    import torch

    class Network(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, tokens, lengths, chars, shapes):
            batch = {"tokens": tokens, "lengths": lengths, "chars": chars, "shapes": shapes}
            if task == "intent":
                return self.inner.decode(batch)  # [B, I]
            outputs = self.inner(batch)
            if task == "tagging":
                return outputs["emissions"]  # [B, T, L]
            return self.inner.doc_output.scores(outputs["intent_logits"]), outputs["emissions"]

    return Network(model).eval()


def export_network(model, setup: Setup, exporter: str) -> onnx.ModelProto:
    import torch

    vocab = setup.predictor.features.featurizer.vocab_size
    n_chars = len(setup.predictor.features.chars)
    tokens = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0]], dtype=torch.long).clamp(max=vocab - 1)
    lengths = torch.tensor([4, 2], dtype=torch.long)
    chars = torch.tensor([[[2, 3, 0], [4, 0, 0], [5, 6, 7], [2, 0, 0]]] * 2, dtype=torch.long)
    chars = chars.clamp(max=n_chars - 1)
    chars[1, 2:] = 0
    shapes = torch.tensor([[1, 3, 2, 5], [1, 1, 0, 0]], dtype=torch.long)
    outputs = (["intent_scores"] if setup.has_intent else []) + (["emissions"] if setup.has_tags else [])
    axes = {
        "tokens": {0: "batch", 1: "time"},
        "lengths": {0: "batch"},
        "chars": {0: "batch", 1: "time", 2: "characters"},
        "shapes": {0: "batch", 1: "time"},
        "emissions": {0: "batch", 1: "time"},
        "intent_scores": {0: "batch"},
    }
    return G.export_torch(
        _network_module(model, setup.task),
        (tokens, lengths, chars, shapes),
        list(NETWORK_INPUTS),
        outputs,
        {k: v for k, v in axes.items() if k in (*NETWORK_INPUTS, *outputs)},
        exporter,
    )


def _network_reads(network: onnx.ModelProto) -> set[str]:
    """The inputs the exported network kept (an embedding without characters drops ``chars``)."""
    return {value.name for value in network.graph.input}


# ------------------------------------------------------------------------------------ graph
def _crf_potentials(output) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():
        return tuple(t.detach().cpu().numpy() for t in output.potentials())


def build_graph(network: onnx.ModelProto, setup: Setup, metadata: dict[str, str]) -> onnx.ModelProto:
    reads = _network_reads(network)
    names: dict[str, WordFeatureNames] = {}

    def pre(b: GraphBuilder) -> None:
        features = build_word_nodes(b, setup.spec, "text", chars="chars" in reads, shapes="shapes" in reads)
        names["features"] = features
        for name, value in [
            ("tokens", features.words),
            ("lengths", features.lengths),
            ("chars", features.chars),
            ("shapes", features.shapes),
        ]:
            if name in reads:
                b.op("Identity", [value], outputs=[G.MODEL_PREFIX + name])

    def post(b: GraphBuilder) -> None:
        features = names["features"]
        if setup.has_tags:
            emissions = G.MODEL_PREFIX + "emissions"
            if setup.decoding == "crf_viterbi":
                output = setup.predictor.model.output
                ids = build_viterbi_tags(b, emissions, features.mask, *_crf_potentials(output))
            else:
                ids = build_argmax_tags(b, emissions, features.mask)
            tags = b.names_of(ids, setup.tag_names, "tag_names")
            b.op("Where", [features.mask, tags, b.const([""])], outputs=[setup.tags_output])
            b.op("Identity", [features.tokens], outputs=["tokens"])
        if setup.has_intent:
            has_tokens = b.op("Greater", [features.count, b.const(np.int64(0))], "has_tokens")  # [B]
            keep = b.op("Unsqueeze", [has_tokens, b.const([1])], "keep")
            scores = b.op(
                "Where",
                [keep, G.MODEL_PREFIX + "intent_scores", b.const(np.float32(0))],
                outputs=["intent_scores"],
            )
            best = b.op("ArgMax", [scores], "best_intent", axis=1, keepdims=0)
            intent = b.names_of(best, setup.intent_names, "intent_name")
            b.op("Where", [has_tokens, intent, b.const([""])], outputs=["intent"])

    string_bt = ["batch", "max_tokens"]
    outputs = []
    if setup.has_intent:
        outputs += [
            helper.make_tensor_value_info("intent", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info(
                "intent_scores", TensorProto.FLOAT, ["batch", len(setup.intent_names)]
            ),
        ]
    if setup.has_tags:
        outputs += [
            helper.make_tensor_value_info("tokens", TensorProto.STRING, string_bt),
            helper.make_tensor_value_info(setup.tags_output, TensorProto.STRING, string_bt),
        ]
    kind = {"tagging": "word tagger", "intent_slot": "joint intent-slot model", "intent": "intent model"}
    described = []
    if setup.has_intent:
        described.append(
            "'intent' string [batch] ('' without tokens), 'intent_scores' float [batch, n_intents]"
        )
    if setup.has_tags:
        described.append(
            f"'tokens' and '{setup.tags_output}' string [batch, max_tokens], '' at padding. "
            f"Decoding: {setup.decoding}"
        )
    doc = (
        f"nlpkit {kind[setup.task]}"
        + (f" (sub-task {setup.subtask!r} of a multi-task run)" if setup.subtask else "")
        + ". Input 'text': string [batch] of raw UTF-8, split on whitespace like str.split(). Outputs: "
        + "; ".join(described)
    )
    return G.assemble(network, [G.string_input("text")], outputs, pre, post, metadata, doc)


def front_end_model(setup: Setup, reads: set[str]) -> tuple[onnx.ModelProto, WordFeatureNames]:
    """The graph's featurizer alone (same builder, same spec), for checking features on large inputs."""
    b = GraphBuilder("nlpkit/")
    names = build_word_nodes(b, setup.spec, "text", chars="chars" in reads, shapes="shapes" in reads)
    outputs = [
        (names.tokens, TensorProto.STRING, 2),
        (names.count, TensorProto.INT64, 1),
        (names.words, TensorProto.INT64, 2),
    ]
    if names.chars:
        outputs.append((names.chars, TensorProto.INT64, 3))
    if names.shapes:
        outputs.append((names.shapes, TensorProto.INT64, 2))
    graph = helper.make_graph(
        b.nodes,
        "nlpkit_front_end",
        [G.string_input("text")],
        [helper.make_tensor_value_info(n, t, [f"d{i}" for i in range(rank)]) for n, t, rank in outputs],
        initializer=b.initializers,
    )
    from nlpkit.export.text_graph import opset_imports

    model = helper.make_model(graph, opset_imports=opset_imports(), producer_name="nlpkit")
    model.ir_version = 9
    return model, names


# ------------------------------------------------------------------------------ parity gate
class FeatureChecker:
    """Runs the front end and compares with ``TaggingFeatures`` token by token."""

    def __init__(self, setup: Setup, reads: set[str]):
        model, self.names = front_end_model(setup, reads)
        self.session = G.session(model)
        self.features = setup.predictor.features
        self.outputs = [self.names.tokens, self.names.count, self.names.words]
        self.outputs += [n for n in (self.names.chars, self.names.shapes) if n]

    def reference(self, tokens: list[str]) -> dict[str, list]:
        from nlpkit.data.token_features import word_shape

        return {
            "words": self.features.words.encode(tokens),
            "chars": [self.features.chars.encode(t) for t in tokens],
            "shapes": [word_shape(t) for t in tokens],
        }

    def compare_row(self, text: str, got: dict[str, np.ndarray], row: int) -> dict | None:
        tokens = text.split()
        n = int(got["count"][row])
        graph_tokens = [str(t) for t in got["tokens"][row]]
        problem = None
        if n != len(tokens) or graph_tokens[:n] != tokens or any(graph_tokens[n:]):
            problem = {"field": "tokens", "python": tokens[:20], "onnx": graph_tokens[:20]}
        else:
            want = self.reference(tokens)
            if got["words"][row, :n].tolist() != want["words"]:
                problem = {
                    "field": "word_ids",
                    "python": want["words"][:20],
                    "onnx": got["words"][row, :n].tolist()[:20],
                }
            elif "shapes" in got and got["shapes"][row, :n].tolist() != want["shapes"]:
                problem = {
                    "field": "shapes",
                    "python": want["shapes"][:20],
                    "onnx": got["shapes"][row, :n].tolist()[:20],
                }
            elif "chars" in got:
                for i, ids in enumerate(want["chars"]):
                    row_ids = got["chars"][row, i]
                    if row_ids[: len(ids)].tolist() != ids or row_ids[len(ids) :].any():
                        problem = {
                            "field": "char_ids",
                            "token": tokens[i],
                            "python": ids,
                            "onnx": row_ids.tolist(),
                        }
                        break
        if problem is not None:
            problem["text"] = text[:200]
        return problem

    def run(self, texts: list[str]) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {"text": np.array(texts, dtype=object)})
        keys = ["tokens", "count", "words"] + [
            k for k, n in (("chars", self.names.chars), ("shapes", self.names.shapes)) if n
        ]
        return dict(zip(keys, values))

    def check_groups(self, groups: dict[str, list[str]], batch_sizes) -> dict:
        mismatches, counts = [], {}
        for group, texts in groups.items():
            counts[group] = len(texts)
            for batch_size in batch_sizes if len(texts) > 1 else [1]:
                for start in range(0, len(texts), batch_size):
                    chunk = texts[start : start + batch_size]
                    got = self.run(chunk)
                    for row, text in enumerate(chunk):
                        problem = self.compare_row(text, got, row)
                        if problem is not None:
                            mismatches.append({"group": group, "batch_size": batch_size, **problem})
        return {
            "passed": not mismatches,
            "examples": counts,
            "batch_sizes": list(batch_sizes),
            "mismatches": len(mismatches),
            "first_mismatches": first_few(mismatches),
        }

    def check_all_codepoints(self) -> dict:
        """Every code point that is not whitespace, as a one-character token: same features.

        Python side: ``WordEncoder`` and ``word_shape`` as ``TaggingFeatures`` calls them; character ids
        straight from the character vocabulary's index (``CharVocab.encode`` of a one-character token).
        Multi-character tokens are compared through ``TaggingFeatures`` itself in ``check_groups``.
        """
        from nlpkit.data.token_features import CharVocab

        tokens, shapes = _codepoint_tokens()
        got = self.run([" ".join(tokens)])
        fields = {
            "tokens": (got["tokens"][0].tolist(), tokens),
            "word_ids": (got["words"][0].tolist(), self.features.words.encode(tokens)),
        }
        if "shapes" in got:
            fields["shapes"] = (got["shapes"][0].tolist(), list(shapes))
        if "chars" in got:
            index = self.features.chars.index
            fields["char_ids"] = (
                got["chars"][0, :, 0].tolist(),
                [index.get(ch, CharVocab.UNK_ID) for ch in tokens],
            )
        result: dict[str, Any] = {"tokens": len(tokens), "fields": list(fields)}
        first = None
        for field, (onnx_values, python_values) in fields.items():
            if onnx_values != python_values:
                i = next((i for i, (a, b) in enumerate(zip(onnx_values, python_values)) if a != b), None)
                i = min(len(onnx_values), len(python_values)) if i is None else i
                first = {"field": field, "index": i, "token": tokens[i] if i < len(tokens) else None,
                         "python": python_values[i : i + 3], "onnx": onnx_values[i : i + 3]}  # fmt: skip
                break
        result["passed"] = first is None
        if first is not None:
            result["first_mismatch"] = first
        return result


@functools.lru_cache(maxsize=1)
def _codepoint_tokens() -> tuple[list[str], tuple[int, ...]]:
    """Every non-whitespace code point as a token, and its ``word_shape`` (data-independent: computed
    once per process)."""
    from nlpkit.data.token_features import word_shape

    tokens = [ch for ch in all_characters() if not ch.isspace()]
    return tokens, tuple(word_shape(ch) for ch in tokens)


def torch_predictions(setup: Setup, texts: list[str]) -> list[dict]:
    return setup.predictor.predict_any(texts, batch_size=MIXED_BATCH)


def onnx_predictions(session, setup: Setup, texts: list[str], batch_size: int) -> list[dict]:
    """The graph's outputs as the PyTorch predictor's dicts (tokens, tags/slots, intent, scores)."""
    results = []
    for values in G.run_batched(session, texts, batch_size, setup.outputs):
        named = dict(zip(setup.outputs, values))
        for row in range(len(values[0])):
            item: dict[str, Any] = {}
            if setup.has_intent:
                item["intent"] = str(named["intent"][row]) or None
                item["intent_scores"] = named["intent_scores"][row]
            if setup.has_tags:
                tokens, tags = named["tokens"][row], named[setup.tags_output][row]
                n = sum(1 for t in tokens if t != "")
                item["tokens"] = [str(t) for t in tokens[:n]]
                item[setup.tags_output] = [str(t) for t in tags[:n]]
                item["padding_empty"] = not any(tags[n:]) and not any(tokens[n:])
            results.append(item)
    return results


def check_predictions(session, setup: Setup, texts: list[str], batch_sizes) -> dict[str, dict]:
    """ONNX tags (and intents) == PyTorch's; intent scores within ``SCORE_TOLERANCE``."""
    reference = torch_predictions(setup, texts)
    key = setup.tags_output
    tag_mismatches, intent_mismatches, score_mismatches, max_diff = [], [], [], 0.0
    for batch_size in batch_sizes:
        got = onnx_predictions(session, setup, texts, batch_size)
        for text, want, have in zip(texts, reference, got):
            if setup.has_tags and (
                have["tokens"] != want["tokens"] or have[key] != want[key] or not have["padding_empty"]
            ):
                tag_mismatches.append(
                    {
                        "batch_size": batch_size,
                        "text": text[:200],
                        "torch": want[key][:30],
                        "onnx": have[key][:30],
                    }
                )
            if not setup.has_intent:
                continue
            if have["intent"] != want["intent"]:
                intent_mismatches.append(
                    {
                        "batch_size": batch_size,
                        "text": text[:200],
                        "torch": want["intent"],
                        "onnx": have["intent"],
                    }
                )
            if want["intent"] is None:
                diff = float(np.abs(have["intent_scores"]).max())  # no tokens: all zeros
            else:
                torch_scores = np.array([want["intent_scores"][n] for n in setup.intent_names])
                diff = float(np.abs(have["intent_scores"] - torch_scores).max())
            max_diff = max(max_diff, diff)
            if diff > SCORE_TOLERANCE:
                score_mismatches.append({"batch_size": batch_size, "text": text[:200], "max_abs_diff": diff})

    def result(mismatches: list[dict], **extra) -> dict:
        return {
            "passed": not mismatches,
            "examples": len(texts),
            "batch_sizes": list(batch_sizes),
            "mismatches": len(mismatches),
            "first_mismatches": first_few(mismatches),
            **extra,
        }

    checks = {key: result(tag_mismatches)} if setup.has_tags else {}
    if setup.has_intent:
        checks["intent"] = result(intent_mismatches)
        checks["intent_scores"] = result(score_mismatches, max_abs_diff=max_diff, tolerance=SCORE_TOLERANCE)
    return checks


def evaluate(session, setup: Setup, sentences) -> dict[str, float]:
    """Test-split metrics of the ONNX model against the gold tags and/or intents."""
    from nlpkit.metrics.spans import span_f1

    if not sentences:
        return {}
    texts = [" ".join(s.tokens) for s in sentences]
    got = onnx_predictions(session, setup, texts, MIXED_BATCH)
    metrics: dict[str, float] = {}
    if setup.has_tags:
        predicted = [g[setup.tags_output] for g in got]
        gold = [list(s.tags) for s in sentences]
        correct = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
        metrics["span_f1"] = span_f1(gold, predicted)
        metrics["token_accuracy"] = correct / max(1, sum(len(g) for g in gold))
    if setup.has_intent:
        intent_hits = [g["intent"] == s.intent for g, s in zip(got, sentences)]
        metrics["intent_accuracy"] = sum(intent_hits) / len(sentences)
        if setup.has_tags:
            metrics["frame_accuracy"] = sum(
                hit and p == g for hit, p, g in zip(intent_hits, predicted, gold)
            ) / len(sentences)
    return metrics


# ------------------------------------------------------------------------------------- main
def _setup(run_dir: Path, cfg, subtask: str | None = None) -> Setup:
    from nlpkit.modules.output.crf import CRFOutput
    from nlpkit.modules.output.softmax import SoftmaxOutput
    from nlpkit.modules.output.word_softmax import WordSoftmaxOutput
    from nlpkit.registry import get_task

    run_task = get_task(str(cfg.task.name))
    if subtask is None:
        task, data_cfg, vocab_dir = str(cfg.task.name), cfg.data, run_dir
    else:  # the run's own (multi-)task says where the sub-task's config and vocabularies are
        task, data_cfg, vocab_dir = run_task.subtask_source(cfg, run_dir, subtask)
    tokenizer = read_tokenizer_spec(vocab_dir / TOKENIZER_FILE)  # refuses before any heavy work
    if subtask is None:
        predictor = run_task.predictor(cfg, run_dir)
    else:  # as nlpkit.load(run_dir) holds it: the shared modules + the sub-task's own heads
        predictor = run_task.predictor(cfg, run_dir).predictors[subtask]
    featurizer = predictor.features.featurizer
    if (featurizer.pad_id, featurizer.unk_id) != (tokenizer.pad_id, tokenizer.unk_id):
        raise ExportError("tokenizer.json and the loaded featurizer disagree on pad/unk ids")
    chars = predictor.features.chars
    decoding, tag_names = None, []
    if task != "intent":
        output = predictor.model.output
        if isinstance(output, CRFOutput):
            decoding = "crf_viterbi"
        elif isinstance(output, WordSoftmaxOutput):
            decoding = "argmax"
        else:
            raise ExportError(f"refused: no ONNX decoding for the output layer {type(output).__name__}")
        tag_names = list(predictor.labels.names)
    intents = None
    if task != "tagging":
        if not isinstance(predictor.model.doc_output, SoftmaxOutput):
            raise ExportError(
                f"refused: no ONNX decoding for the intent output {type(predictor.model.doc_output).__name__}"
            )
        intents = list(predictor.intents.names)
    return Setup(
        task=task,
        predictor=predictor,
        spec=WordFeatureSpec(tokenizer, list(chars.chars), chars.max_word_length),
        tag_names=tag_names,
        intent_names=intents,
        decoding=decoding,
        data_cfg=data_cfg,
        vocab_dir=vocab_dir,
        subtask=subtask,
    )


def _edge_cases(setup: Setup) -> list[str]:
    vocab = [w for w in setup.predictor.features.featurizer.vocab if w not in ("<pad>", "<unk>")] or ["word"]
    long_word = "".join(setup.spec.chars[:5] or ["x"]) * (setup.spec.max_word_length + 3)
    return [
        *EDGE_CASES,
        " ".join(vocab[i % len(vocab)] for i in range(300)),  # a long sentence
        f"{long_word} short {long_word.upper()}",  # words past max_word_length
        "<pad> <PAD> <unk> a<pad>b",
        "McDonald iPhone USA Usa uSA x2 2x 42 ½ ² ३ _ -- 'Quote' ÉCOLE Ǆemo ǅemo ǆemo",
    ]


def _vocabulary_texts(setup: Setup) -> list[str]:
    """Every vocabulary word (as is, UPPER and Title) and every known character, as tokens."""
    vocab = [w for w in setup.predictor.features.featurizer.vocab]
    chunks = [vocab[i : i + 200] for i in range(0, len(vocab), 200)]
    texts = [" ".join(chunk) for chunk in chunks]
    texts += [" ".join(w.upper() for w in chunk) for chunk in chunks]
    texts += [" ".join(w.title() for w in chunk) for chunk in chunks]
    chars = [c for c in setup.spec.chars if not c.isspace()]
    texts += [" ".join(chars[i : i + 200]) for i in range(0, len(chars), 200)]
    return texts


def _metadata(setup: Setup, run_dir: Path, checkpoint: Path) -> dict[str, str]:
    outputs = {}
    metadata = {"task": setup.task}
    if setup.subtask is not None:
        metadata["subtask"] = setup.subtask
    if setup.has_intent:
        outputs["intent"] = "string [batch]: argmax intent name ('' for a text without tokens)"
        outputs["intent_scores"] = "float [batch, n_intents]: softmax (zeros without tokens)"
        metadata["intents"] = json.dumps(setup.intent_names, ensure_ascii=False)
    if setup.has_tags:
        outputs["tokens"] = "string [batch, max_tokens]: whitespace tokens, '' at padding"
        outputs[setup.tags_output] = (
            f"string [batch, max_tokens]: tag per token ({setup.decoding}), '' at padding"
        )
        scheme = str(setup.data_cfg.tag_scheme)
        metadata["labels"] = json.dumps(setup.tag_names, ensure_ascii=False)
        metadata["tag_scheme"] = "BIO" if scheme == "IOB1" else scheme
        metadata["decoding"] = str(setup.decoding)
    else:  # intent only: the labels it outputs are the intents
        metadata["labels"] = metadata["intents"]
    return {
        **metadata,
        **provenance_metadata(run_dir, checkpoint, setup.vocab_dir / TOKENIZER_FILE),
        "chars_sha256": sha256_file(setup.vocab_dir / CHARS_FILE),
        "chars_file": str((setup.vocab_dir / CHARS_FILE).relative_to(run_dir)),
        "tokenizer": "str.split() whitespace tokens; " + setup.spec.tokenizer.description,
        "max_word_length": json.dumps(setup.spec.max_word_length),
        "outputs": json.dumps(outputs),
    }


def export(
    run_dir: Path, cfg, out_dir: Path, quantize: bool, exporter: str, subtask: str | None = None
) -> tuple[dict, dict[str, bytes]]:
    """Build, check and return ``(report, {filename: bytes})``; files only when every check passed.
    ``subtask``: the sub-task of a ``task=multitask`` run to export (its model and vocabularies)."""
    from nlpkit.training.checkpoint import best_checkpoint

    started = time.perf_counter()
    setup = _setup(run_dir, cfg, subtask)
    checkpoint = best_checkpoint(run_dir)
    metadata = _metadata(setup, run_dir, checkpoint)

    network = export_network(setup.predictor.model, setup, exporter)
    model = build_graph(network, setup, metadata)
    export_seconds = time.perf_counter() - started

    from nlpkit.registry import get_task

    dm = get_task(setup.task).datamodule(setup.data_cfg, setup.vocab_dir)
    dm.load()
    split = "test" if "test" in dm.splits else "val"
    sentences = list(dm.splits[split].sentences)
    texts = [" ".join(s.tokens) for s in sentences]
    edge = _edge_cases(setup)

    checks_started = time.perf_counter()
    seconds: dict[str, float] = {}

    def timed(name: str, start: float) -> None:
        seconds[name] = round(time.perf_counter() - start, 3)

    features = FeatureChecker(setup, _network_reads(network))
    tick = time.perf_counter()
    checks: dict[str, Any] = {"features_all_codepoints": features.check_all_codepoints()}
    timed("features_all_codepoints", tick)
    tick = time.perf_counter()
    checks["features"] = features.check_groups(
        {split: texts, "edge_cases": edge, "vocabulary": _vocabulary_texts(setup)}, [1, MIXED_BATCH]
    )
    timed("features", tick)
    tick = time.perf_counter()
    main_session = G.session(model)
    checks.update(check_predictions(main_session, setup, texts + edge, [1, MIXED_BATCH]))
    timed("predictions", tick)
    report = gate_report(
        task=setup.task,
        run_dir=run_dir,
        split=split,
        examples=len(texts),
        edge_cases=len(edge),
        checks=checks,
        metadata=metadata,
        exporter=exporter,
        model=model,
        export_seconds=export_seconds,
    )
    report["timings"]["checks"] = seconds
    if setup.subtask is not None:
        report["subtask"] = setup.subtask
    tick = time.perf_counter()
    files = accept_model(
        report,
        split,
        model,
        main_session,
        lambda session: evaluate(session, setup, sentences),
        quantized=(
            (
                lambda: build_graph(
                    G.quantize_dynamic_int8(network),
                    setup,
                    {**metadata, "quantization": "onnxruntime dynamic int8 (weights)"},
                )
            )
            if quantize
            else None
        ),
    )
    timed("metrics" + ("_and_quantize" if quantize else ""), tick)
    report["timings"]["checks_seconds"] = round(time.perf_counter() - checks_started, 3)
    report["timings"]["total_seconds"] = round(time.perf_counter() - started, 3)
    return report, files
