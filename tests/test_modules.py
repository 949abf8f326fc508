"""Components on their own: shapes, padding invariance, hand-computed metrics, safe checkpoints."""

from __future__ import annotations

import io
import os

import pytest
import torch

from nlpkit.errors import ArtifactError
from nlpkit.metrics import classification_metrics
from nlpkit.modules.decoder import ComposedLabelDecoder, MLPDecoder
from nlpkit.modules.embedding import WordEmbedding
from nlpkit.modules.output import MultiLabelOutput, SoftmaxOutput
from nlpkit.modules.representation import POOLINGS, BiLSTMRepresentation, DocNNRepresentation
from nlpkit.modules.representation.bilstm import reverse_padded
from nlpkit.training.checkpoint import load_checkpoint, save_checkpoint


def _padded_pair(dim: int = 6):
    """One sequence alone, and the same sequence as row 0 of a batch padded to a longer length."""
    torch.manual_seed(0)
    alone = torch.randn(1, 4, dim)
    batch = torch.randn(2, 7, dim)
    batch[0, :4] = alone[0]
    batch[0, 4:] = 99.0  # garbage in padding positions must not leak
    return alone, torch.ones(1, 4, dtype=torch.bool), batch, torch.tensor([[1] * 4 + [0] * 3, [1] * 7]).bool()


@pytest.mark.parametrize("pooling", POOLINGS)
def test_bilstm_representation_ignores_padding(pooling):
    module = BiLSTMRepresentation(
        6, hidden_dim=5, num_layers=2, dropout=0.0, pooling=pooling, attention_dim=4
    ).eval()
    alone, mask1, batch, mask2 = _padded_pair()
    out1, out2 = module(alone, mask1), module(batch, mask2)
    assert out1.shape == (1, module.output_dim) and out2.shape == (2, module.output_dim)
    torch.testing.assert_close(out1[0], out2[0], rtol=0, atol=1e-6)


def test_docnn_ignores_padding_and_handles_short_inputs():
    module = DocNNRepresentation(6, kernel_sizes=(2, 5), num_filters=3, dropout=0.0).eval()
    alone, mask1, batch, mask2 = _padded_pair()
    torch.testing.assert_close(module(alone, mask1)[0], module(batch, mask2)[0], rtol=0, atol=1e-6)
    one_token = module(torch.randn(1, 1, 6), torch.ones(1, 1, dtype=torch.bool))
    assert torch.isfinite(one_token).all() and one_token.shape == (1, 6)


def test_reverse_padded_reverses_within_length():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_padded(x, torch.tensor([3, 5]))
    assert out[..., 0].tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


def test_word_embedding_pad_row_is_zero_and_dims():
    emb = WordEmbedding(10, 4, padding_idx=0)
    out = emb(torch.tensor([[0, 3]]))
    assert out.shape == (1, 2, 4) and emb.output_dim == 4 and torch.all(out[0, 0] == 0)


def test_pretrained_file_with_wrong_width_names_the_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("hello 0.1 0.2 0.3\nworld 0.1 0.2\n")
    with pytest.raises(ValueError, match=r"v.txt:2: expected a word and 3 numbers"):
        WordEmbedding(3, 3, pretrained_path=str(path), vocab=["<pad>", "hello", "world"])


def test_mlp_decoder_shapes():
    assert MLPDecoder(8, 3, hidden_dims=[5, 4])(torch.randn(2, 8)).shape == (2, 3)
    assert len(MLPDecoder(8, 3, hidden_dims=[]).layers) == 1
    with pytest.raises(ValueError, match="relu, tanh"):
        MLPDecoder(8, 3, activation="swishy")


def test_output_layers():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
    soft = SoftmaxOutput(3)
    assert soft.predict(logits).tolist() == [0, 2]
    torch.testing.assert_close(soft.scores(logits).sum(-1), torch.ones(2))
    expected = -(torch.log_softmax(logits, -1)[0, 0] + torch.log_softmax(logits, -1)[1, 1]) / 2
    torch.testing.assert_close(soft.loss(logits, torch.tensor([0, 1])), expected)
    multi = MultiLabelOutput(3, threshold=0.5)
    assert multi.predict(logits).tolist() == [[1, 1, 0], [1, 1, 1]]  # sigmoid(0) = 0.5 reaches the threshold


def test_metrics_against_hand_computed_values():
    # true: 0 0 1 1 2 2 ; pred: 0 1 1 1 2 0  -> accuracy 4/6
    # per class F1: c0 P=1/2 R=1/2 F=.5 ; c1 P=2/3 R=1 F=.8 ; c2 P=1 R=1/2 F=2/3  -> macro (0.5+0.8+2/3)/3
    metrics = classification_metrics(3, multilabel=False)
    metrics.update(torch.tensor([0, 1, 1, 1, 2, 0]), torch.tensor([0, 0, 1, 1, 2, 2]))
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["accuracy"] == pytest.approx(4 / 6)
    assert values["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_multilabel_metrics_against_hand_computed_values():
    metrics = classification_metrics(2, multilabel=True)
    metrics.update(torch.tensor([[1, 0], [1, 1], [0, 1]]), torch.tensor([[1, 0], [0, 1], [0, 1]]))
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["accuracy"] == pytest.approx(2 / 3)  # exact-match rows
    # label 0: P=1/2 R=1 F=2/3 ; label 1: P=1 R=1 F=1
    assert values["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "payload": _Evil()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ArtifactError, match="refused: the checkpoint carries pickled objects"):
        load_checkpoint(path)


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "good.ckpt"
    save_checkpoint({"state_dict": {"w": torch.ones(100)}}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(100))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="corrupted or truncated checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ArtifactError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_word_dropout_replaces_tokens_with_unk_only_in_training():
    torch.manual_seed(0)
    emb = WordEmbedding(50, 4, padding_idx=0, word_dropout=0.5, unk_idx=1)
    tokens = torch.randint(2, 50, (8, 30))
    tokens[:, 25:] = 0
    seen = []
    emb.embedding.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    emb.train()
    emb(tokens)
    dropped = (seen[0] == 1).float()[:, :25].mean()
    assert 0.35 < dropped < 0.65 and torch.all(seen[0][:, 25:] == 0), "padding is never dropped"
    emb.eval()
    emb(tokens)
    assert torch.equal(seen[1], tokens)
    with pytest.raises(ValueError, match="needs unk_idx"):
        WordEmbedding(5, 2, word_dropout=0.1)


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    from nlpkit.utils.io import atomic_open, write_text

    write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert (tmp_path / "a.txt").stat().st_mode & 0o044, "readable by group/others like any written file"
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "a.txt") as handle:
        handle.write("half")
        raise RuntimeError("killed mid-write")
    assert (tmp_path / "a.txt").read_text() == "hello", "a failed write never replaces a good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_composed_label_decoder_scores_a_label_from_its_parts():
    names = ["atis_airfare", "atis_flight", "atis_flight#atis_airfare", "atis_quantity"]
    decoder = ComposedLabelDecoder(6, 4, names, hidden_dims=[])
    assert decoder.parts == ["atis_airfare", "atis_flight", "atis_quantity"]
    assert decoder.membership.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    x = torch.randn(5, 6)
    with torch.no_grad():
        decoder.label_bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        p = torch.sigmoid(decoder.part_logits(x))  # [5, 3] part probabilities
        logits = decoder(x)
    # Each label's logit: the log-probability of exactly its parts being on, plus its bias.
    by_hand = torch.stack(
        [
            torch.log(p[:, 0] * (1 - p[:, 1]) * (1 - p[:, 2])) + 0.1,
            torch.log((1 - p[:, 0]) * p[:, 1] * (1 - p[:, 2])) - 0.2,
            torch.log(p[:, 0] * p[:, 1] * (1 - p[:, 2])) + 0.3,
            torch.log((1 - p[:, 0]) * (1 - p[:, 1]) * p[:, 2]),
        ],
        dim=-1,
    )
    torch.testing.assert_close(logits, by_hand, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="3 label names for 4 outputs"):
        ComposedLabelDecoder(6, 4, names[:3])
