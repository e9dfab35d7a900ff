"""The span head's three ways to the same numbers: span vectors on the (start, width) grid by
width slices or by gathering the valid spans, and logits with the output layer folded into the labels."""
import pytest
import torch

from spacy_gliner.modeling.heads import SpanMarkerHead


def grid_inputs(lengths, dim=32, labels=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    words = torch.randn(len(lengths), max(lengths), dim, generator=generator)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return words, mask, torch.randn(len(lengths), labels, dim, generator=generator)


@pytest.mark.parametrize("mode", ["markerV0", "marker"])
@pytest.mark.parametrize("lengths", [[9, 8, 8, 7], [12, 2, 1, 2]], ids=["sorted batch", "unequal lengths"])
def test_logits_are_the_span_vectors_times_the_labels(mode, lengths):
    torch.manual_seed(0)
    head = SpanMarkerHead(32, 5, 0.0, mode).eval()
    words, mask, _ = grid_inputs(lengths)
    for num_labels in (1, 7, 40):  # 40 > 32 dimensions: span vectors, then the product
        labels = grid_inputs(lengths, labels=num_labels, seed=num_labels)[2]
        assert head.folds_labels(num_labels) == (num_labels <= 32)
        with torch.inference_mode():
            for word_mask in (mask, None):
                spans = head(words, word_mask)
                expected = torch.einsum("bwkd,bcd->bwkc", spans, labels)
                assert torch.allclose(head.logits(words, labels, word_mask), expected, atol=1e-5, rtol=1e-5)
            if mode == "markerV0":  # spans past a sentence's end are zeros, and so are their logits
                past_end = torch.arange(9 if lengths[0] == 9 else 12)[:, None] + torch.arange(5)[None] >= torch.tensor(lengths)[:, None, None]
                assert spans_zero(head(words, mask), past_end) and spans_zero(head.logits(words, labels, mask), past_end)


def spans_zero(grid, where):
    return bool((grid[where] == 0).all()) and bool((grid[~where].abs().sum(-1) > 0).all())


def test_width_slices_and_gathered_spans_agree():
    """A sorted batch takes the width slices, a batch of very unequal lengths gathers the valid
    spans: both give the spans one sentence alone gives."""
    torch.manual_seed(1)
    head = SpanMarkerHead(32, 5, 0.0, "markerV0").eval()
    for lengths in ([9, 8, 8, 7], [12, 2, 1, 2]):
        words, mask, _ = grid_inputs(lengths)
        with torch.inference_mode():
            together = head(words, mask)
            for row, length in enumerate(lengths):
                alone = head(words[row : row + 1, :length], mask[row : row + 1, :length])
                assert torch.allclose(together[row, :length], alone[0], atol=1e-5)


def test_gradients_reach_the_head_through_folded_logits():
    head = SpanMarkerHead(32, 5, 0.1, "markerV0").train()
    words, mask, labels = grid_inputs([6, 4])
    head.logits(words, labels, mask).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
