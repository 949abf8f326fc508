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
from nlpkit.export.pipeline import export_network
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
    assert type(model.representation.encoder).forward is BiLSTM.forward  # nothing left patched
    assert "forward" not in vars(model.representation.encoder)
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
