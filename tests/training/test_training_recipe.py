"""The GLiNER training recipe building blocks against the reference ``gliner`` 0.2.29.

``gliner`` is a test-only oracle here: the code under test never imports it.
"""

from __future__ import annotations

import itertools
import random
import warnings
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spacy_gliner.training import losses as L  # noqa: E402
from spacy_gliner.training import label_sampling as S  # noqa: E402
from spacy_gliner.training import span_targets as T  # noqa: E402

ref_lf = pytest.importorskip("gliner.modeling.loss_functions")
ref_base = pytest.importorskip("gliner.modeling.base")
ref_proc = pytest.importorskip("gliner.data_processing.processor")


class _RefLossHost:
    """Stand-in ``self`` for the reference loss methods (they only call ``self._loss``)."""

    _loss = ref_base.BaseModel._loss
    config = SimpleNamespace(token_loss_coef=1.0, span_loss_coef=1.0)


def _close(a, b, tol=1e-5):
    assert torch.allclose(torch.as_tensor(a).double(), torch.as_tensor(b).double(), rtol=tol, atol=tol), (a, b)


def _random_span_batch(seed, B=3, W=7, K=4, C=5, p_pos=0.08):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, W, K, C, generator=g) * 3
    targets = (torch.rand(B, W, K, C, generator=g) < p_pos).float()
    lengths = torch.randint(2, W + 1, (B,), generator=g)
    w = torch.arange(W).view(1, W, 1)
    k = torch.arange(K).view(1, 1, K)
    span_mask = (w + k) < lengths.view(B, 1, 1)
    targets = targets * span_mask.unsqueeze(-1)
    n_labels = torch.randint(1, C + 1, (B,), generator=g)
    label_mask = torch.arange(C).view(1, C) < n_labels.view(B, 1)
    targets = targets * label_mask.view(B, 1, 1, C)
    return scores, targets, label_mask, span_mask


# --------------------------------------------------------------------------- focal / dice


@pytest.mark.parametrize(
    "alpha,gamma,margin,smooth,reduction",
    list(itertools.product([-1.0, 0.25, 0.75], [0.0, 2.0], [0.0, 0.1], [0.0, 0.1], ["none", "mean", "sum"])),
)
def test_focal_loss_matches_reference(alpha, gamma, margin, smooth, reduction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, 3, generator=g) * 4
    t = (torch.rand(4, 9, 3, generator=g) < 0.3).float()
    t[0, 0, 0] = -100  # ignored element
    kw = dict(alpha=alpha, gamma=gamma, prob_margin=margin, label_smoothing=smooth, reduction=reduction)
    _close(L.focal_loss_with_logits(x, t, **kw), ref_lf.focal_loss_with_logits(x, t, **kw))


def test_focal_loss_probabilities_input_and_gradients():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(5, 6, generator=g).clamp(0.01, 0.99)
    t = (torch.rand(5, 6, generator=g) < 0.5).float()
    kw = dict(alpha=0.3, gamma=1.5, normalize_prob=False, reduction="sum")
    _close(L.focal_loss_with_logits(p, t, **kw), ref_lf.focal_loss_with_logits(p, t, **kw))

    x1 = torch.randn(3, 8, generator=g, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    t = (torch.rand(3, 8, generator=g) < 0.4).float()
    L.focal_loss_with_logits(x1, t, alpha=0.75, gamma=2, reduction="sum").backward()
    ref_lf.focal_loss_with_logits(x2, t, alpha=0.75, gamma=2, reduction="sum").backward()
    _close(x1.grad, x2.grad)


@pytest.mark.parametrize("gamma,reduction", itertools.product([0.0, 1.0, 2.0], ["none", "mean", "sum"]))
def test_dice_loss_matches_reference(gamma, reduction):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 10, 4, generator=g)
    t = (torch.rand(2, 10, 4, generator=g) < 0.2).float()
    _close(
        L.span_dice_loss(x, t, gamma=gamma, reduction=reduction),
        ref_lf.span_dice_loss(x, t, gamma=gamma, reduction=reduction),
    )


def test_unknown_reduction_raises():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError):
        L.focal_loss_with_logits(x, x, reduction="avg")
    s, t, lm, sm = _random_span_batch(0)
    with pytest.raises(ValueError):
        L.span_classification_loss(s, t, lm, sm, reduction="avg")


# --------------------------------------------------------------------------- span loss


SPAN_CASES = list(
    itertools.product(
        [(-1.0, 0.0), (0.75, 0.0), (0.25, 2.0)],  # (alpha, gamma)
        [0.0, 0.1],  # label smoothing
        [0.0, 0.05],  # prob margin
        ["sum", "mean"],
        ["focal", "dice"],
        [False, True],  # span width weight
    )
)


@pytest.mark.parametrize("ag,smooth,margin,reduction,loss_type,width_w", SPAN_CASES)
def test_span_loss_matches_reference_uni_encoder(ag, smooth, margin, reduction, loss_type, width_w):
    alpha, gamma = ag
    scores, targets, label_mask, span_mask = _random_span_batch(3)
    kw = dict(
        alpha=alpha,
        gamma=gamma,
        label_smoothing=smooth,
        prob_margin=margin,
        reduction=reduction,
        loss_type=loss_type,
        use_span_width_weight=width_w,
    )
    ours = L.span_classification_loss(scores, targets, label_mask, span_mask, negatives=1.0, masking="none", **kw)
    ref = ref_base.UniEncoderSpanModel.loss(
        _RefLossHost(), scores, targets, label_mask, span_mask, negatives=1.0, masking="none", **kw
    )
    _close(ours, ref)


@pytest.mark.parametrize("masking", ["none", "global", "label", "span"])
@pytest.mark.parametrize("negatives", [1.0, 0.5, 0.1])
def test_span_loss_negative_masking_matches_reference_with_same_seed(masking, negatives):
    scores, targets, label_mask, span_mask = _random_span_batch(4, p_pos=0.15)
    kw = dict(alpha=0.75, gamma=0.0, negatives=negatives, masking=masking, reduction="sum")
    torch.manual_seed(123)
    ours = L.span_classification_loss(scores, targets, label_mask, span_mask, **kw)
    torch.manual_seed(123)
    ref = ref_base.UniEncoderSpanModel.loss(_RefLossHost(), scores, targets, label_mask, span_mask, **kw)
    _close(ours, ref)
    # and our own generator gives the same draws as the global one seeded alike
    gen = torch.Generator().manual_seed(123)
    _close(L.span_classification_loss(scores, targets, label_mask, span_mask, generator=gen, **kw), ref)


def test_span_loss_masking_statistics():
    scores, targets, label_mask, span_mask = _random_span_batch(5, B=4, W=30, K=6, C=8, p_pos=0.02)
    full = L.span_classification_loss(scores, targets, label_mask, span_mask, masking="global", reduction="none")
    torch.manual_seed(0)
    half = L.span_classification_loss(
        scores, targets, label_mask, span_mask, masking="global", negatives=0.5, reduction="none"
    )
    pos = targets.bool() & span_mask.unsqueeze(-1) & label_mask.view(4, 1, 1, 8).bool()
    # positives are never masked
    _close(half[pos], full[pos])
    neg = (~targets.bool()) & span_mask.unsqueeze(-1) & label_mask.view(4, 1, 1, 8).bool() & (full > 0)
    kept = (half[neg] > 0).float().mean().item()
    assert 0.4 < kept < 0.6


def test_span_loss_reference_biencoder_quirk():
    """Reference bi-encoder passes label_smoothing as prob_margin (documented)."""
    scores, targets, label_mask, span_mask = _random_span_batch(6)
    ref = ref_base.BiEncoderSpanModel.loss(
        _RefLossHost(), scores, targets, label_mask, span_mask, alpha=0.75, label_smoothing=0.1
    )
    ours = L.span_classification_loss(
        scores, targets, label_mask, span_mask, alpha=0.75, prob_margin=0.1, label_smoothing=0.0
    )
    _close(ours, ref)
    # without label smoothing both reference span losses agree with ours
    for cls in (ref_base.BiEncoderSpanModel, ref_base.UniEncoderSpanModel):
        _close(
            L.span_classification_loss(scores, targets, label_mask, span_mask, alpha=0.75, reduction="mean"),
            cls.loss(_RefLossHost(), scores, targets, label_mask, span_mask, alpha=0.75, reduction="mean"),
        )


def test_span_loss_none_reduction_and_empty_mean():
    scores, targets, label_mask, span_mask = _random_span_batch(7)
    per_cell = L.span_classification_loss(scores, targets, label_mask, span_mask, reduction="none")
    assert per_cell.shape == scores.shape
    _close(per_cell.sum(), L.span_classification_loss(scores, targets, label_mask, span_mask))
    assert (per_cell[~span_mask] == 0).all()
    zero = L.span_classification_loss(scores, targets, label_mask, torch.zeros_like(span_mask), reduction="mean")
    assert zero.item() == 0.0


# --------------------------------------------------------------------------- token loss


@pytest.mark.parametrize(
    "shape4,alpha,gamma,smooth,reduction",
    list(itertools.product([True, False], [-1.0, 0.75], [0.0, 2.0], [0.0, 0.1], ["sum", "mean"])),
)
def test_token_loss_matches_reference(shape4, alpha, gamma, smooth, reduction):
    g = torch.Generator().manual_seed(8)
    B, W, C = 3, 11, 4
    shape = (B, W, C, 3) if shape4 else (B, W, C)
    scores = torch.randn(*shape, generator=g) * 2
    targets = (torch.rand(*shape, generator=g) < 0.2).float()
    word_mask = (torch.arange(W).view(1, W) < torch.tensor([[11], [6], [3]])).long()
    label_mask = (torch.arange(C).view(1, C) < torch.tensor([[4], [2], [3]])).long()
    kw = dict(alpha=alpha, gamma=gamma, label_smoothing=smooth, reduction=reduction, prob_margin=0.02)
    ours = L.token_classification_loss(scores, targets, label_mask, word_mask, negatives=0.3, **kw)
    ref = ref_base.UniEncoderTokenModel.loss(
        _RefLossHost(), scores, targets, label_mask, word_mask, negatives=0.3, **kw
    )
    _close(ours, ref)


def test_token_loss_rejects_span_masking():
    x = torch.zeros(1, 2, 2, 3)
    with pytest.raises(ValueError):
        L.token_classification_loss(x, x, torch.ones(1, 2), torch.ones(1, 2), masking="span")


# --------------------------------------------------------------------------- label sampling


CORPUS_LABELS = {
    "news": ["person", "organization", "location", "miscellaneous"],
    "bio": ["disease", "chemical"],
    "tweets": ["person", "location", "product", "event", "group"],
}


def _random_batch(rng, B=8):
    gold, corpora = [], []
    for _ in range(B):
        corpus = rng.choice(sorted(CORPUS_LABELS))
        n = rng.randint(0, 5)
        gold.append([rng.choice(CORPUS_LABELS[corpus]) for _ in range(n)])
        corpora.append(corpus)
    return gold, corpora


def test_sampling_is_seeded_and_deterministic():
    gold, corpora = _random_batch(random.Random(0))
    cfg = S.LabelSamplingConfig(max_neg_type_ratio=2)
    a = S.sample_prompt_labels(gold, random.Random(42), cfg, corpora=corpora, corpus_labels=CORPUS_LABELS)
    b = S.sample_prompt_labels(gold, random.Random(42), cfg, corpora=corpora, corpus_labels=CORPUS_LABELS)
    assert a.labels == b.labels and a.label_mask == b.label_mask
    outs = {
        tuple(map(tuple, S.sample_prompt_labels(gold, random.Random(s), cfg, corpora=corpora,
                                                corpus_labels=CORPUS_LABELS).labels))
        for s in range(20)
    }
    assert len(outs) > 1


@pytest.mark.parametrize("mode", ["per_example", "shared"])
@pytest.mark.parametrize("rule", ["corpus", "any"])
def test_sampling_invariants(mode, rule):
    rng = random.Random(1)
    pool = sorted({t for v in CORPUS_LABELS.values() for t in v} | {"gene", "award"})
    cfg = S.LabelSamplingConfig(max_types=4, max_neg_type_ratio=2, mode=mode, negative_rule=rule)
    n_neg_total = 0
    cross = 0
    for _ in range(300):
        gold, corpora = _random_batch(rng)
        out = S.sample_prompt_labels(gold, rng, cfg, corpora=corpora, corpus_labels=CORPUS_LABELS, pool=pool)
        assert len(out.labels) == len(gold)
        for i, g in enumerate(gold):
            labels, mask = out.labels[i], out.label_mask[i]
            assert len(labels) == len(mask) == len(set(labels))
            cap = cfg.max_types if mode == "per_example" else cfg.max_types * len(gold)
            assert len(labels) <= cap
            # negatives never include a positive of the same example
            assert not set(out.negatives[i]) & set(g)
            # every gold type is either prompted or reported as dropped
            assert set(out.positives[i]) | set(out.dropped_positives[i]) == set(g)
            assert not set(out.positives[i]) & set(out.dropped_positives[i])
            for t, m in zip(labels, mask):
                if t in g:
                    assert m == 1  # positives are always scored
            if rule == "corpus":
                assert set(out.negatives[i]) <= set(CORPUS_LABELS[corpora[i]])
            else:
                cross += len(set(out.negatives[i]) - set(CORPUS_LABELS[corpora[i]]))
            if mode == "per_example":
                assert all(mask)
                n_neg_total += len(out.negatives[i])
                # n_neg <= max_neg_type_ratio * number of mentions
                assert len(out.negatives[i]) <= cfg.max_neg_type_ratio * len(g)
        if mode == "shared":
            assert all(row == out.labels[0] for row in out.labels)
    if rule == "any":
        assert cross > 0  # the reference rule does use cross-corpus negatives
    if mode == "per_example":
        assert n_neg_total > 0


def test_sampling_without_corpora_is_single_corpus_and_missing_corpus_raises():
    gold = [["person"], ["disease", "disease"]]
    out = S.sample_prompt_labels(gold, random.Random(0), S.LabelSamplingConfig(max_neg_type_ratio=5))
    # single corpus: every batch type is an admissible negative
    assert set(out.labels[0]) <= {"person", "disease"}
    with pytest.raises(KeyError):
        S.sample_prompt_labels(
            gold, random.Random(0), S.LabelSamplingConfig(max_neg_type_ratio=5), corpora=["news", "nope"],
            corpus_labels=CORPUS_LABELS,
        )


def test_sampling_ratio_zero_gives_positives_only_like_reference():
    gold, _ = _random_batch(random.Random(3), B=16)
    cfg = S.LabelSamplingConfig(max_neg_type_ratio=0)
    ours = S.sample_prompt_labels(gold, random.Random(0), cfg)
    host = SimpleNamespace(config=SimpleNamespace(max_neg_type_ratio=0, max_types=25))
    batch = [{"tokenized_text": ["x"] * 10, "ner": [[0, 0, t] for t in g]} for g in gold]
    random.seed(0)
    c2i, _ = ref_proc.BaseProcessor.batch_generate_class_mappings(host, batch)
    for i, g in enumerate(gold):
        ref_types = {t for t in c2i[i] if t != ""}
        assert set(ours.labels[i]) == ref_types == set(g)


def test_sampling_negative_counts_match_reference_distribution():
    """Number of negatives per example: ours (exact n_neg) >= reference (n_neg minus collisions)."""
    rng = random.Random(5)
    host = SimpleNamespace(config=SimpleNamespace(max_neg_type_ratio=1, max_types=25))
    cfg = S.LabelSamplingConfig(max_neg_type_ratio=1, negative_rule="any")
    ours_n, ref_n = [], []
    for it in range(400):
        gold, _ = _random_batch(rng)
        out = S.sample_prompt_labels(gold, random.Random(it), cfg)
        ours_n += [len(x) for x in out.negatives]
        random.seed(it)
        batch = [{"tokenized_text": ["x"] * 10, "ner": [[0, 0, t] for t in g]} for g in gold]
        c2i, _ = ref_proc.BaseProcessor.batch_generate_class_mappings(host, batch)
        ref_n += [len({t for t in c2i[i] if t} - set(g)) for i, g in enumerate(gold)]
    assert np.mean(ours_n) >= np.mean(ref_n) > 0
    # both are supported on [0, ratio * mentions]; the means are of the same order
    assert np.mean(ours_n) < 2.5 * np.mean(ref_n)


def test_sampling_max_types_and_random_drop_report_dropped_positives():
    gold = [["a", "b", "c", "d", "e", "f"]]
    out = S.sample_prompt_labels(gold, random.Random(0), S.LabelSamplingConfig(max_types=3, max_neg_type_ratio=0))
    assert len(out.labels[0]) == 3
    assert sorted(out.labels[0] + out.dropped_positives[0]) == list("abcdef")
    sizes = Counter()
    for s in range(300):
        o = S.sample_prompt_labels(gold, random.Random(s), S.LabelSamplingConfig(random_drop=True, max_neg_type_ratio=0))
        sizes[len(o.labels[0])] += 1
        assert len(o.labels[0]) + len(o.dropped_positives[0]) == 6
    assert set(sizes) == set(range(1, 7))  # uniform 1..n kept


def test_sampling_empty_examples():
    gold = [[], ["person"]]
    out = S.sample_prompt_labels(gold, random.Random(0), S.LabelSamplingConfig())
    assert out.labels[0] == []
    cfg = S.LabelSamplingConfig(max_neg_type_ratio=1, empty_negatives=2)
    got = [
        S.sample_prompt_labels(gold, random.Random(s), cfg, pool=["location", "date"]).labels[0] for s in range(30)
    ]
    # single corpus: "person" is a true negative for the example that has none
    assert any(got) and all(len(x) <= 2 and set(x) <= {"person", "location", "date"} for x in got)


def test_shared_mode_masks_inadmissible_negatives():
    gold = [["person", "location"], ["disease"]]
    out = S.sample_prompt_labels(
        gold, random.Random(0), S.LabelSamplingConfig(mode="shared"), corpora=["news", "bio"],
        corpus_labels=CORPUS_LABELS,
    )
    assert sorted(out.labels[0]) == ["disease", "location", "person"]
    m0 = dict(zip(out.labels[0], out.label_mask[0]))
    m1 = dict(zip(out.labels[1], out.label_mask[1]))
    assert m0 == {"person": 1, "location": 1, "disease": 0}
    assert m1 == {"person": 0, "location": 0, "disease": 1}
    assert out.padded_label_mask() == out.label_mask


# --------------------------------------------------------------------------- span targets


def _ref_span_host(max_width, max_len=384):
    host = object.__new__(ref_proc.UniEncoderSpanProcessor)
    host.config = SimpleNamespace(max_width=max_width, max_len=max_len)
    return host


def test_span_targets_match_reference_labels_and_span_mask():
    rng = random.Random(9)
    K = 4
    labels_all = ["person", "location", "organization"]
    tokens, ents, c2i = [], [], []
    for _ in range(6):
        n = rng.randint(1, 12)
        spans = []
        for _ in range(rng.randint(0, 4)):
            s = rng.randrange(n)
            e = min(n - 1, s + rng.randint(0, K - 1))
            spans.append([s, e, rng.choice(labels_all)])
        prompt = rng.sample(labels_all, rng.randint(1, 3))
        tokens.append(["w"] * n)
        ents.append(spans)
        c2i.append({t: j + 1 for j, t in enumerate(prompt)})
    host = _ref_span_host(K)
    ref_labels = ref_proc.UniEncoderSpanProcessor.create_labels(
        host, {"tokens": tokens, "classes_to_id": c2i, "entities": ents}
    )
    pre = [ref_proc.UniEncoderSpanProcessor.preprocess_example(host, t, e, c) for t, e, c in zip(tokens, ents, c2i)]
    ref_batch = ref_proc.UniEncoderSpanProcessor.create_batch_dict(host, pre, c2i, None)

    prompts = [sorted(c, key=c.get) for c in c2i]
    ours = T.batch_span_targets(ents, prompts, [len(t) for t in tokens], K)
    B, W, K_, C = ours.shape
    dense = ours.dense()
    assert ref_labels.shape == (B, W * K, C)
    np.testing.assert_array_equal(dense.reshape(B, W * K, C), ref_labels.numpy())
    np.testing.assert_array_equal(ours.span_mask().reshape(B, W * K), ref_batch["span_mask"].numpy())
    assert ours.counts["too_wide"] == 0


def test_span_targets_report_wide_truncated_invalid_unprompted():
    spans = [(0, 1, "person"), (2, 9, "event"), (3, 3, "date"), (5, 4, "person"), (11, 11, "person"), (0, 1, "person")]
    with pytest.warns(UserWarning, match="wider than max_width=4"):
        t = T.span_targets(spans, ["person", "event"], num_words=12, max_width=4, max_len=10)
    assert t.positives == [(0, 1, 0)]  # de-duplicated
    assert t.too_wide == [(2, 9, "event")]
    assert t.unprompted == [(3, 3, "date")]
    assert t.invalid == [(5, 4, "person")]
    assert t.truncated == [(11, 11, "person")]
    assert t.shape == (10, 4, 2)
    assert t.flat_indices() == [(0 * 4 + 1) * 2 + 0]
    with pytest.raises(ValueError):
        T.span_targets(spans, ["event"], 12, 4, on_too_wide="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = T.span_targets(spans, ["event"], 12, 4, on_too_wide="ignore")
    assert len(quiet.too_wide) == 1


def test_span_targets_exclusive_ends_and_batch_warning_counts():
    incl = T.span_targets([(1, 2, "a"), (4, 4, "b")], ["a", "b"], 6, 3)
    excl = T.span_targets([(1, 3, "a"), (4, 5, "b")], ["a", "b"], 6, 3, end_inclusive=False)
    assert incl.positives == excl.positives == [(1, 1, 0), (4, 0, 1)]
    with pytest.warns(UserWarning, match="^3 gold span"):
        bt = T.batch_span_targets(
            [[(0, 5, "a")], [(0, 7, "a"), (1, 6, "b")]], [["a"], ["a", "b"]], [8, 8], max_width=3
        )
    assert bt.counts["too_wide"] == 3
    assert bt.shape == (2, 8, 3, 2)


def test_span_targets_scatter_into_reference_loss_end_to_end():
    """Sampling -> targets -> our loss == reference processor labels -> reference loss."""
    rng = random.Random(11)
    gold_spans = [[(0, 1, "person"), (3, 3, "location")], [(2, 4, "disease")], []]
    n_words = [6, 5, 3]
    sample = S.sample_prompt_labels(
        [[t for *_, t in sp] for sp in gold_spans], rng, S.LabelSamplingConfig(max_neg_type_ratio=2),
        pool=["organization", "chemical"],
    )
    K = 3
    bt = T.batch_span_targets(gold_spans, sample.labels, n_words, K)
    B, W, _, C = bt.shape
    target = torch.zeros(bt.shape)
    if bt.index[0]:
        target[tuple(torch.tensor(ix) for ix in bt.index)] = 1.0
    span_mask = torch.from_numpy(bt.span_mask())
    label_mask = torch.tensor(sample.padded_label_mask())
    scores = torch.randn(B, W, K, C, generator=torch.Generator().manual_seed(0))

    host = _ref_span_host(K)
    c2i = [{t: j + 1 for j, t in enumerate(lb)} for lb in sample.labels]
    tokens = [["w"] * n for n in n_words]
    ref_labels = ref_proc.UniEncoderSpanProcessor.create_labels(
        host, {"tokens": tokens, "classes_to_id": c2i, "entities": [[list(s) for s in sp] for sp in gold_spans]}
    )
    ref_labels = torch.nn.functional.pad(ref_labels, (0, C - ref_labels.shape[-1])).view(B, W, K, C)
    assert torch.equal(ref_labels, target)
    ours = L.span_classification_loss(scores, target, label_mask, span_mask, alpha=0.75)
    ref = ref_base.UniEncoderSpanModel.loss(_RefLossHost(), scores, ref_labels, label_mask, span_mask, alpha=0.75)
    _close(ours, ref)


def test_token_target_indices_match_reference():
    host = object.__new__(ref_proc.UniEncoderTokenProcessor)
    host.config = SimpleNamespace(max_width=12, max_len=384)
    ents = [[[0, 2, "a"], [4, 4, "b"], [1, 1, "z"]], [[0, 0, "b"]]]
    c2i = [{"a": 1, "b": 2}, {"b": 1}]
    batch = {"tokens": [["w"] * 6, ["w"] * 3], "classes_to_id": c2i, "entities": ents,
             "seq_length": torch.tensor([[6], [3]])}
    ref = ref_proc.UniEncoderTokenProcessor.create_labels(host, batch)
    ours = torch.zeros_like(ref)
    for b, (sp, c) in enumerate(zip(ents, c2i)):
        for w, cc, ch in T.token_target_indices(sp, sorted(c, key=c.get), len(batch["tokens"][b])):
            ours[b, w, cc, ch] = 1
    assert torch.equal(ours, ref)


def test_learning_rate_schedules_after_warmup():
    import math

    from spacy_gliner.training.settings import TrainingSettings, check_training_settings
    from spacy_gliner.training.trainer import Trainer

    def factors(schedule):
        trainer = Trainer.__new__(Trainer)  # only the schedule is under test, no model needed
        trainer.settings = TrainingSettings(warmup_steps=10, total_steps=110, schedule=schedule)
        return [trainer._lr_factor(step) for step in (0, 9, 10, 60, 110, 500)]

    assert factors("linear") == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0, 0.0])
    cosine = factors("cosine")
    assert cosine == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0, 0.0], abs=1e-9)
    trainer = Trainer.__new__(Trainer)
    trainer.settings = TrainingSettings(warmup_steps=10, total_steps=110, schedule="cosine")
    assert trainer._lr_factor(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))  # above linear's 0.75
    assert factors("constant") == pytest.approx([0.1, 1.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="'training.schedule' must be one of linear, cosine, constant"):
        check_training_settings("gliner_ner", {"schedule": "exponential"}, {"schedule": "linear"})
