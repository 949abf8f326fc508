"""Export hooks on the components (nlpkit.modules.exportable): the model's own input example, the
BiLSTM's export forward, each output layer's ONNX decoding, and the refusal of a layer without one.

No training: small models with random weights, exported by the real pipeline step and run in
onnxruntime against the PyTorch forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nlpkit.data.tag_schemes import allowed_transitions
from nlpkit.errors import ExportError
from nlpkit.export import graph as G
from nlpkit.export.decoding import LABEL_DECODINGS, TAG_DECODINGS, decoding_of
from nlpkit.export.heads import LabelHead
from nlpkit.export.pipeline import export_network
from nlpkit.modules.decoder.composed import ComposedLabelDecoder
from nlpkit.modules.decoder.word_mlp import WordMLPDecoder
from nlpkit.modules.embedding.char_cnn import CharCNNEmbedding
from nlpkit.modules.embedding.concat import ConcatEmbedding
from nlpkit.modules.embedding.shape import ShapeEmbedding
from nlpkit.modules.embedding.word import WordEmbedding
from nlpkit.modules.output.crf import CRFOutput
from nlpkit.modules.output.multilabel import MultiLabelOutput
from nlpkit.modules.output.softmax import SoftmaxOutput
from nlpkit.modules.output.word_softmax import WordSoftmaxOutput
from nlpkit.modules.representation.bilstm import BiLSTM
from nlpkit.modules.representation.token_bilstm import TokenBiLSTMRepresentation
from nlpkit.tasks.tagging.model import WordTagger

TAGS = ["O", "B-A", "I-A"]


def tiny_tagger(shape: bool = True) -> WordTagger:
    torch.manual_seed(0)
    components = {"word": WordEmbedding(12, 6), "chars": CharCNNEmbedding(9, 4, (1, 2), 3)}
    if shape:
        components["shape"] = ShapeEmbedding(8, 2)
    embedding = ConcatEmbedding(components)
    representation = TokenBiLSTMRepresentation(embedding.output_dim, 5, num_layers=2, dropout=0.0)
    decoder = WordMLPDecoder(representation.output_dim, len(TAGS))
    return WordTagger(
        embedding, representation, decoder, CRFOutput(len(TAGS), allowed_transitions(TAGS, "BIO"))
    ).eval()


@pytest.mark.parametrize("shape", [True, False], ids=["word+chars+shape", "word+chars"])
def test_input_example_is_the_models_own_inputs(shape):
    model = tiny_tagger(shape)
    example = model.input_example()
    assert list(example) == ["tokens", "lengths", "chars", *(["shapes"] if shape else [])]
    lengths = example["lengths"]
    padding = torch.arange(example["tokens"].size(1)).unsqueeze(0) >= lengths.unsqueeze(1)
    assert lengths.tolist() == [4, 2] and not example["tokens"][padding].any()
    assert example["tokens"].max() < 12 and example["chars"].max() < 9 and not example["chars"][padding].any()
    assert (example["chars"][~padding][:, 0] > 0).all()  # every real token has characters
    emissions = model.forward_for_export(*example.values())
    assert emissions.shape == (2, 4, len(TAGS))
    assert torch.equal(emissions, model(example)["emissions"])


def test_network_exports_from_the_hooks_and_matches_torch():
    """The exported network reads exactly the model's inputs, holds one native LSTM per BiLSTM layer
    (the BiLSTM's forward_for_export) and computes the PyTorch emissions at another batch shape."""
    model = tiny_tagger()
    network = export_network(model, "torchscript")
    assert [i.name for i in network.graph.input] == ["tokens", "lengths", "chars", "shapes"]
    assert [o.name for o in network.graph.output] == ["emissions"]
    ops = [node.op_type for node in network.graph.node]
    assert ops.count("LSTM") == 2 and "GatherElements" not in ops
    assert ops.count("Conv") == 1  # the char CNN's two width banks as one convolution
    assert type(model.representation.encoder).forward is BiLSTM.forward  # nothing left patched
    assert "forward" not in vars(model.representation.encoder)
    chars = model.embedding.components["chars"]
    assert "forward" not in vars(chars) and chars._export_bank is None  # the merged copy dropped
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 1])
    batch = {
        "tokens": torch.randint(2, 12, (3, 7), generator=generator),
        "lengths": lengths,
        "chars": torch.randint(1, 9, (3, 7, 5), generator=generator),
        "shapes": torch.randint(1, 8, (3, 7), generator=generator),
    }
    padding = torch.arange(7).unsqueeze(0) >= lengths.unsqueeze(1)
    batch["tokens"][padding] = 0
    batch["chars"][padding] = 0
    batch["shapes"][padding] = 0
    want = model(batch)["emissions"].detach().numpy()
    got = G.session(network).run(None, {k: v.numpy() for k, v in batch.items()})[0]
    real = ~padding.numpy()
    assert np.abs(got[real] - want[real]).max() < 1e-5


def test_bilstm_export_forward_equals_forward():
    torch.manual_seed(0)
    lstm = BiLSTM(4, 3, num_layers=2, dropout=0.3).eval()
    x = torch.randn(3, 6, 4)
    mask = torch.arange(6).unsqueeze(0) < torch.tensor([6, 2, 4]).unsqueeze(1)
    assert torch.allclose(lstm.forward_for_export(x, mask), lstm(x, mask), atol=1e-6)


@pytest.mark.parametrize("filters", [(2, 3, 4), 3], ids=["unequal banks", "equal banks"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_char_cnn_merged_bank_equals_the_per_width_convolutions(activation, filters):
    """One convolution over kernels left-padded to the widest width, masked per filter (equal banks:
    per bank, added), gives each word the per-width banks' vector: words shorter than a kernel,
    full-width words, and padding."""
    torch.manual_seed(0)
    cnn = CharCNNEmbedding(11, 5, (1, 3, 4), filters, highway_layers=1, activation=activation).eval()
    chars = torch.randint(1, 11, (3, 4, 6))
    lengths = torch.tensor([[6, 1, 2, 0], [3, 4, 5, 0], [1, 0, 0, 0]])  # characters per word
    chars[torch.arange(6).view(1, 1, -1) >= lengths.unsqueeze(-1)] = 0
    with torch.no_grad():
        want = cnn(chars)
        assert torch.allclose(cnn.forward_for_export(chars), want, atol=1e-6)
        cnn.prepare_export()  # the constants the exported graph holds give the same vectors
        assert torch.allclose(cnn.forward_for_export(chars), want, atol=1e-6)
        cnn.finish_export()
    assert cnn._export_bank is None
    assert torch.equal(want[lengths == 0], torch.zeros(int((lengths == 0).sum()), cnn.output_dim))


def test_composed_decoder_exports_finite_scores_for_confident_part_logits():
    """A trained model's part logits reach |z| > 100, where ``Log(Sigmoid(z))`` (the exporter's
    ``logsigmoid``) is -inf and the membership product NaN: the ATIS composed-decoder export failed so.
    The hook's form stays finite and equal to eager ``forward``."""
    torch.manual_seed(0)
    names = ["a", "b", "a#b", "c"]
    decoder = ComposedLabelDecoder(4, 4, names, hidden_dims=[]).eval()
    x = torch.tensor([[3000.0, -2000.0, 500.0, 10.0], [0.1, 0.2, -0.3, 0.4]])  # [B, input_dim]
    assert decoder.part_logits(x).abs().max() > 100
    model = nn.Sequential(decoder)  # the hook is a component's, as inside a task model
    network = G.export_torch(model, (x,), ["x"], ["logits"], {"x": {0: "batch"}})  # runs the hooks
    got = G.session(network).run(None, {"x": x.numpy()})[0]
    want = decoder(x).detach().numpy()
    assert np.isfinite(got).all() and np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_a_nan_score_fails_the_gate_however_small_the_other_differences():
    """``|nan - x| > tol`` is False and ``max`` skips NaN: the check once passed an all-NaN intent
    score with ``max_abs_diff`` 9e-7. One side's NaN is a mismatch; NaN on both sides is equal."""
    head = LabelHead(SoftmaxOutput(2), ["x", "y"], network="scores")
    for onnx_scores, passes in (([np.nan, np.nan], False), ([0.25, 0.75], True)):
        checks = head.new_checks(1, [1])
        head.compare(
            {"label": "y", "scores": [0.25, 0.75]}, {"label": "y", "scores": onnx_scores}, {}, checks
        )
        assert all(check.result()["passed"] for check in checks.values()) is passes
    checks = head.new_checks(1, [1])
    head.compare({"label": "y", "scores": [np.nan, 1.0]}, {"label": "y", "scores": [np.nan, 1.0]}, {}, checks)
    assert all(check.result()["passed"] for check in checks.values())


def test_each_output_layer_names_its_onnx_decoding():
    crf = CRFOutput(len(TAGS), allowed_transitions(TAGS, "BIO"))
    decoding = decoding_of(crf, TAG_DECODINGS, "output layer")
    start, transitions, end = (t.detach().numpy() for t in crf.potentials())
    assert decoding.kind == "crf_viterbi"
    assert np.array_equal(decoding.params["transitions"], transitions)
    assert np.array_equal(decoding.params["start"], start) and np.array_equal(decoding.params["end"], end)
    assert decoding_of(WordSoftmaxOutput(3), TAG_DECODINGS, "output layer").kind == "argmax"
    assert decoding_of(SoftmaxOutput(3), LABEL_DECODINGS, "output layer").kind == "argmax"
    multilabel = decoding_of(MultiLabelOutput(3, threshold=0.3), LABEL_DECODINGS, "output layer")
    assert multilabel.kind == "threshold" and multilabel.params["threshold"] == pytest.approx(0.3)


def test_an_output_layer_without_a_known_decoding_is_refused():
    class NoHook(nn.Module):
        pass

    with pytest.raises(ExportError, match="refused: no ONNX decoding for the output layer NoHook"):
        decoding_of(NoHook(), LABEL_DECODINGS, "output layer")
    # a document-level decision under a tagging head: the kind is not one a tag head has
    with pytest.raises(ExportError, match="MultiLabelOutput.*'threshold'"):
        decoding_of(MultiLabelOutput(3), TAG_DECODINGS, "output layer")
