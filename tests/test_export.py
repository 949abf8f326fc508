"""ONNX export: one file with the tokenizer inside, a parity gate, refusals, a torch-free predictor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import nlpkit
from nlpkit.export import ExportError, export_run
from tests.conftest import run_module, torch_blocked_env

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "bilstm": [
        "model=bilstm",
        "model.embedding.embed_dim=16",
        "model.representation.hidden_dim=16",
        "model.representation.attention_dim=8",
        "model.decoder.hidden_dims=[8]",
    ],
    "cnn": [
        "model=cnn",
        "model.embedding.embed_dim=16",
        "model.representation.num_filters=8",
        "model.representation.kernel_sizes=[2,3]",
    ],
}


@pytest.fixture(scope="session")
def export_data_dir(tmp_path_factory) -> Path:
    from nlpkit.data.builtin import ensure_builtin

    return ensure_builtin(tmp_path_factory.mktemp("export_builtin"))


@pytest.fixture(scope="session")
def exported(tmp_path_factory, export_data_dir) -> dict[str, tuple[Path, dict]]:
    """A tiny bilstm and cnn, each trained once for real and exported (cnn also quantized)."""
    runs = {}
    for name, overrides in TINY.items():
        run_dir = tmp_path_factory.mktemp(f"export_{name}")
        cfg = nlpkit.compose(
            [
                "debug=fast",
                "logger=csv",
                "trainer.max_epochs=1",
                f"paths.builtin_dir={export_data_dir}",
                *overrides,
            ],
            output_dir=str(run_dir),
        )
        nlpkit.train(cfg)
        report = export_run(run_dir, quantize=name == "cnn")
        runs[name] = (run_dir, report)
    return runs


@pytest.mark.parametrize("name", ["bilstm", "cnn"])
def test_export_passes_parity_and_writes_one_file(exported, name):
    run_dir, report = exported[name]
    out = run_dir / "export"
    assert report["passed"] is True
    assert all(check["passed"] for check in report["checks"].values())
    assert report["checks"]["tokenizer_all_codepoints"]["characters"] > 1_000_000
    assert report["checks"]["token_ids"]["batch_sizes"] == [1, 64]
    assert report["checks"]["scores"]["max_abs_diff"] <= 1e-4
    assert json.loads((out / "export_report.json").read_text())["passed"] is True
    model = onnx.load(out / "model.onnx")
    assert [i.name for i in model.graph.input] == ["text"]
    assert [o.name for o in model.graph.output] == ["label", "scores"]
    meta = {p.key: p.value for p in model.metadata_props}
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    assert meta["task"] == "doc_cls" and json.loads(meta["labels"]) == labels
    assert meta["requires_onnxruntime_extensions"] == "false"
    assert meta["nlpkit_version"] == nlpkit.__version__
    from nlpkit.utils.io import sha256_file

    assert meta["tokenizer_sha256"] == sha256_file(run_dir / "tokenizer.json")
    assert meta["weights_sha256"] == sha256_file(run_dir / meta["weights_file"])
    # standard domains only: no onnxruntime-extensions op
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx.ml", "com.microsoft"}
    assert not list(out.glob(".*.tmp"))


def test_quantized_model_and_accuracy_delta(exported):
    run_dir, report = exported["cnn"]
    quantized = report["quantized"]
    assert (run_dir / "export" / "model.int8.onnx").is_file()
    assert abs(quantized["delta"]["accuracy"]) <= 1.0
    assert quantized["test_metrics"]["accuracy"] == pytest.approx(
        quantized["test_metrics_fp32"]["accuracy"] + quantized["delta"]["accuracy"]
    )
    assert quantized["test_metrics_fp32"] == report["metrics"]["test_onnx"]
    assert 0.9 <= quantized["label_agreement_with_fp32"] <= 1.0


def test_int8_gate_passes_and_records_its_rule(exported):
    run_dir, report = exported["cnn"]
    gate = report["quantized"]["gate"]
    assert gate["passed"] is True and "at most 1%" in gate["rule"]
    assert gate["checks"] and set(gate["checks"]) <= set(report["checks"])  # the heads' own checks
    for check in gate["checks"].values():
        assert check["passed"] and check["changed_share"] <= 0.01


def test_int8_gate_refuses_a_quantized_file_that_changes_labels(exported, tmp_path, monkeypatch):
    """A broken int8 network (here: its weights scrambled after quantization) must not be written; the
    fp32 file still is, and the report names the failing check."""
    from onnx import numpy_helper

    import nlpkit.export.graph as graph

    real = graph.quantize_dynamic_int8
    rng = np.random.default_rng(0)

    def broken(network):
        model = real(network)
        for init in model.graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype == np.float32 and array.size > 16:
                init.CopyFrom(
                    numpy_helper.from_array(rng.standard_normal(array.shape).astype(np.float32), init.name)
                )
        return model

    monkeypatch.setattr(graph, "quantize_dynamic_int8", broken)
    out = tmp_path / "out"
    report = export_run(exported["cnn"][0], out_dir=out, quantize=True)
    assert (out / "model.onnx").is_file() and not (out / "model.int8.onnx").exists()
    gate = report["quantized"]["gate"]
    assert gate["passed"] is False and report["quantized"]["file"] is None
    failed = [name for name, check in gate["checks"].items() if not check["passed"]]
    assert failed and all(gate["checks"][name]["changed_share"] > 0.01 for name in failed)


def test_every_edge_case_tokenizes_like_hf(exported):
    from nlpkit.data.featurizer import Featurizer
    from nlpkit.export import graph as G
    from nlpkit.export.front_ends import debug_model as _rename_for_debug
    from nlpkit.export.parity import EDGE_CASES

    run_dir, _ = exported["bilstm"]
    featurizer = Featurizer.load(run_dir / "tokenizer.json")
    model = onnx.load(run_dir / "export" / "model.onnx")
    debug = G.with_debug_outputs(
        _rename_for_debug(model),
        [("debug/tokens", onnx.TensorProto.INT64), ("debug/lengths", onnx.TensorProto.INT64)],
    )
    session = G.session(debug)
    long_text = " ".join(featurizer.vocab[2:] * 200)
    cases = [*EDGE_CASES, long_text, "İSTANBUL", "\u1c89\u1c8a", "a<pad>b <unk>"]
    for text in cases:
        tokens, lengths = session.run(
            ["debug/tokens", "debug/lengths"], {"text": np.array([text], dtype=object)}
        )
        assert tokens[0, : lengths[0]].tolist() == featurizer.encode_batch([text])[0], text
    tokens, lengths = session.run(["debug/tokens", "debug/lengths"], {"text": np.array(cases, dtype=object)})
    for row, text in enumerate(cases):
        want = featurizer.encode_batch([text])[0]
        assert tokens[row, : lengths[row]].tolist() == want, text
        assert (tokens[row, lengths[row] :] == featurizer.pad_id).all()
    assert int(lengths[cases.index(long_text)]) == 128  # truncated to max_length


def _copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("export", "csv", "*.png"))
    return dest


def _edit_tokenizer(run_dir: Path, edit) -> None:
    path = run_dir / "tokenizer.json"
    spec = json.loads(path.read_text())
    edit(spec)
    path.write_text(json.dumps(spec))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s["normalizer"]["normalizers"].insert(0, {"type": "NFC"}), "NFC"),
        (lambda s: s["normalizer"]["normalizers"].pop(0), "İ"),
        (lambda s: s.update(pre_tokenizer={"type": "BertPreTokenizer"}), "BertPreTokenizer"),
        (
            lambda s: s["added_tokens"].append(
                {
                    "id": 0,
                    "content": "<pad>",
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": True,
                }
            ),
            "added tokens",
        ),
        (lambda s: s.update(padding={"strategy": "BatchLongest"}), "padding"),
    ],
    ids=["nfc", "lowercase-without-dotted-i", "bert-pre-tokenizer", "added-tokens", "hf-padding"],
)
def test_unexportable_tokenizer_is_refused(exported, tmp_path, edit, message):
    run_dir = _copy_run(exported["cnn"][0], tmp_path / "run")
    _edit_tokenizer(run_dir, edit)
    with pytest.raises(ExportError, match="refused") as info:
        export_run(run_dir)
    assert message in str(info.value)
    assert not (run_dir / "export" / "model.onnx").exists()


def test_cli_exits_non_zero_on_refusal(exported, tmp_path, capsys):
    from nlpkit.export.__main__ import main

    run_dir = _copy_run(exported["cnn"][0], tmp_path / "run")
    _edit_tokenizer(run_dir, lambda s: s["normalizer"]["normalizers"].insert(0, {"type": "NFC"}))
    assert main([f"run_dir={run_dir}"]) == 1
    assert "NFC" in capsys.readouterr().err
    assert main(["nonsense"]) == 2


def test_tampered_weights_fail_the_gate(exported, tmp_path, monkeypatch):
    from onnx import numpy_helper

    import nlpkit.export.pipeline as pipeline

    real = pipeline.export_network

    def perturbed(*args, **kwargs):
        model = real(*args, **kwargs)
        for init in model.graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype == np.float32 and array.size > 16:
                init.CopyFrom(numpy_helper.from_array(array * 1.05 + 0.01, init.name))
        return model

    monkeypatch.setattr(pipeline, "export_network", perturbed)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="parity gate failed") as info:
        export_run(exported["cnn"][0], out_dir=out)
    assert "scores" in str(info.value)
    assert not (out / "model.onnx").exists()
    report = json.loads((out / "export_report.json").read_text())
    assert report["passed"] is False and report["checks"]["scores"]["first_mismatches"]
    assert report["checks"]["token_ids"]["passed"] is True


def test_wrong_vocabulary_fails_the_gate(exported, tmp_path, monkeypatch):
    import nlpkit.export.text_graph as text_graph

    real = text_graph.lookup_table

    def swapped(spec, divergent):
        keys, values = real(spec, divergent)
        a, b = values.index(5), values.index(6)  # two ordinary words trade ids
        values[a], values[b] = values[b], values[a]
        return keys, values

    monkeypatch.setattr(text_graph, "lookup_table", swapped)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="token_ids"):
        export_run(exported["bilstm"][0], out_dir=out)
    report = json.loads((out / "export_report.json").read_text())
    mismatch = report["checks"]["token_ids"]["first_mismatches"][0]
    assert mismatch["hf_ids"] != mismatch["onnx_ids"]
    assert not (out / "model.onnx").exists()


def test_predictor_runs_without_torch(exported, tmp_path):
    run_dir, _ = exported["bilstm"]
    texts = ["wake me up at 7 am", "play some jazz", "Ünïcode İstanbul ÉCOLE straße"]  # blank: EmptyTextError
    script = textwrap.dedent(
        f"""
        import json, sys
        from nlpkit.serving import OnnxPredictor
        predictor = OnnxPredictor({str(run_dir / "export" / "model.onnx")!r}, threads=1)
        out = predictor.predict({texts!r})
        assert "torch" not in sys.modules
        print(json.dumps(out))
        """
    )
    env = torch_blocked_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    onnx_out = json.loads(proc.stdout.strip().splitlines()[-1])
    torch_out = nlpkit.load(run_dir).predict(texts)
    assert [r["label"] for r in onnx_out] == [r["label"] for r in torch_out]
    for got, want in zip(onnx_out, torch_out):
        assert got["scores"].keys() == want["scores"].keys()
        assert max(abs(got["scores"][k] - want["scores"][k]) for k in want["scores"]) < 1e-4


def test_predict_cli_onnx_backend_without_torch(exported, tmp_path):
    """``python -m nlpkit.predict ... backend=onnx`` serves the exported file with torch blocked."""
    run_dir, _ = exported["cnn"]
    texts = ["wake me up at 7 am", "play some jazz"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    env = torch_blocked_env(tmp_path)
    args = [
        f"run_dir={run_dir}",
        f"input={tmp_path / 'in.txt'}",
        f"output={tmp_path / 'out.jsonl'}",
        "backend=onnx",
    ]
    proc = subprocess.run([sys.executable, "-m", "nlpkit.predict", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [p["label"] for p in nlpkit.load(run_dir).predict(texts)]
    missing = [f"run_dir={tmp_path}", *args[1:]]  # a directory with no exported model
    proc = subprocess.run([sys.executable, "-m", "nlpkit.predict", *missing], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "exported model not found" in proc.stderr and "python -m nlpkit.export" in proc.stderr


def test_re_export_leaves_only_the_new_files(exported, tmp_path):
    """A re-export without quantize=true (CLI) removes the earlier model.int8.onnx and the temporary
    file of a killed write: the export folder holds exactly what the latest export wrote. The run
    directory is given relative to the working directory, as a user types it."""
    run_dir = tmp_path / "run"
    shutil.copytree(exported["cnn"][0], run_dir)
    export_dir = run_dir / "export"
    assert (export_dir / "model.int8.onnx").is_file()
    (export_dir / ".model.onnx.k1ll3d.tmp").write_bytes(b"half a model")
    proc = run_module("nlpkit.export", ["run_dir=run"], cwd=tmp_path)
    assert json.loads(proc.stdout)["files"] == ["model.onnx"]
    assert sorted(p.name for p in export_dir.iterdir()) == ["export_report.json", "model.onnx"]
    report = json.loads((export_dir / "export_report.json").read_text())
    assert sorted(report["files_removed"]) == [".model.onnx.k1ll3d.tmp", "model.int8.onnx"]


@pytest.mark.parametrize("network_shape", [["batch"], ["batch", 1]])
def test_value_head_writes_one_float_per_text_and_gates_it_within_tolerance(network_shape):
    """``ValueHead``: a network's ``[B]`` or ``[B, 1]`` floats -> graph output ``score [batch]`` (0.0 for
    a text without tokens); its parity check catches a value off by more than the tolerance or a NaN
    on one side only; its serving entry is a ``value`` head that fits the graph it built."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from nlpkit.errors import ArtifactError
    from nlpkit.export.front_ends import FrontEndValues
    from nlpkit.export.graph import MODEL_PREFIX
    from nlpkit.export.heads import ValueHead
    from nlpkit.export.text_graph import OPSET, GraphBuilder
    from nlpkit.modules.output.regression import RegressionOutput
    from nlpkit.modules.output.softmax import SoftmaxOutput
    from nlpkit.serving.heads import check_graph_outputs, parse_heads

    head = ValueHead(RegressionOutput(), network="scores", output="score", noun="rating")
    with pytest.raises(
        ExportError, match=r"onnx_decoding\(\) kind 'argmax' is not one a output layer exports with \(value\)"
    ):
        ValueHead(SoftmaxOutput(3), network="scores")
    head.check_network(network_shape)
    for wrong in (["batch", 2], ["batch", "time", 1], []):
        with pytest.raises(
            ExportError, match=r"value head reads network output 'scores' as values \[batch\]"
        ):
            head.check_network(wrong)

    values = np.array([0.5, -2.0, 7.25], dtype=np.float32).reshape([3] + [1] * (len(network_shape) - 1))
    for count in (np.array([2, 0, 1]), None):
        b = GraphBuilder("nlpkit/")
        head.build(b, FrontEndValues(count=None if count is None else "count"))
        inputs = [helper.make_tensor_value_info(MODEL_PREFIX + "scores", TensorProto.FLOAT, network_shape)]
        if count is not None:
            inputs.append(helper.make_tensor_value_info("count", TensorProto.INT64, ["batch"]))
        graph = helper.make_graph(b.nodes, "value", inputs, head.value_infos(), initializer=b.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        onnx.checker.check_model(model)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {MODEL_PREFIX + "scores": values, **({} if count is None else {"count": count})}
        rows = head.rows(dict(zip(head.outputs, session.run(head.outputs, feeds))))
        assert rows == [{"score": 0.5}, {"score": 0.0 if count is not None else -2.0}, {"score": 7.25}]

    checks = head.new_checks(4, [1])
    predictions = [{"score": 0.50001}, {"score": -2.1}, {"score": float("nan")}, {"score": float("nan")}]
    graph_rows = [*rows[:3], {"score": float("nan")}]
    for want, have in zip(map(head.from_prediction, predictions), graph_rows):
        head.compare(want, have, {"text": "t"}, checks)
    result = checks["score"].result()
    assert not result["passed"] and result["mismatches"] == 2  # -2.1 vs -2.0, and NaN vs 7.25
    assert [m["torch"] for m in result["first_mismatches"]][0] == pytest.approx(-2.1)
    assert head.from_prediction({"score": None}) == {"score": 0.0}  # a text without tokens

    def problem(field: str, what: str) -> ArtifactError:
        return ArtifactError(f"metadata {field!r} {what}")

    (served,) = parse_heads(json.loads(json.dumps([head.serving()])), problem)
    assert served.kind == "value" and served.describe() == head.serving()
    assert check_graph_outputs([served], {"score": ("tensor(float)", 1)}, "metadata 'heads'") is None
    assert [(f.key, f.type) for f in served.fields()] == [("score", "float")]
    assert served.shape({"value": np.array([1.5], dtype=np.float32)}) == [{"score": 1.5}]


@pytest.mark.parametrize("case", ["network-shape", "serving-entry"])
def test_a_head_that_does_not_fit_is_refused_before_any_file(exported, tmp_path, monkeypatch, case):
    """A head over a network output of the wrong shape (a value head over doc_cls scores ``[B, L]``),
    or a head whose ``heads`` entry the server could not read against the graph, is an ExportError:
    no file is written that ``nlpkit.serve`` would refuse or shape wrong."""
    import nlpkit.tasks.doc_cls.export as doc_cls_export
    from nlpkit.export.heads import LabelHead, ValueHead

    real = doc_cls_export.export_spec

    def value_head_spec(*args, **kwargs):
        spec = real(*args, **kwargs)
        spec.heads = [ValueHead(network="scores", output="score")]
        return spec

    if case == "network-shape":
        monkeypatch.setattr(doc_cls_export, "export_spec", value_head_spec)
        message = r"value head reads network output 'scores' as values \[batch\] or \[batch, 1\], but it is \['batch', \d+\]"
    else:
        monkeypatch.setattr(
            LabelHead, "serving", lambda head: {"kind": "value", "outputs": {"value": head.label}}
        )
        message = (
            r"serving description does not fit its graph: graph output 'label' is tensor\(string\) of rank 1; "
            r"the 'value' head of metadata 'heads' reads it as its 'value': tensor\(float\)"
        )
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=message):
        export_run(exported["cnn"][0], out_dir=out)
    assert not (out / "model.onnx").exists()
