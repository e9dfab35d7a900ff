"""Checkpoints with post-fusion layers (``post_fusion_schema``): gliner_ner gives the reference's
spans, labels and scores.

Replicas are built with the reference package on the real MiniLM encoder (random seeded heads,
random fusion layers). The reference applies the fusion in bi-encoder models only (span and
token); uni-encoder models hold the weights unused, which the uni-encoder case checks too.
Thresholds come from each fixture's own span probabilities, so a moderate number of spans pass
on any CPU.
"""
import json

import pytest
import spacy
import torch

from support import build_reference_checkpoint, crossner_labels, crossner_sentences, separating_threshold, split_words
from support import our_spans, reference_spans

# Hidden sizes are multiples of MiniLM's 12 attention heads, which the fusion layers use (the
# reference builds other sizes but cannot run them); 192 exercises the encoder projection.
FUSION_FAMILIES = {
    # sharpened label projection (support.FAMILIES): this replica's raw scores all sit within
    # float noise of 0.4975, where greedy decoding would break ties differently run to run
    "uni_span_fused": dict(
        span_mode="markerV0", hidden_size=192, num_rnn_layers=1, post_fusion_schema="l2l-l2t-t2t", sharpen=25.0
    ),
    "bi_span_fused": dict(span_mode="markerV0", hidden_size=192, bi=True, post_fusion_schema="l2l-l2t-t2t"),
    # two layers and the text-to-label step: words fused with labels feed the next layer's labels
    "bi_span_fused_2": dict(
        span_mode="marker", hidden_size=384, bi=True, post_fusion_schema="t2l-l2l-l2t-t2t", num_post_fusion_layers=2
    ),
    "bi_token_fused": dict(span_mode="token_level", hidden_size=192, bi=True, post_fusion_schema="l2t-t2l-t2t"),
}
LABELS = crossner_labels("AI")[:5] + ["musical artist"]
TOL = 1e-5


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """family -> (checkpoint dir, reference model, our nlp), built lazily."""
    from gliner import GLiNER

    root = tmp_path_factory.mktemp("fusion")
    built = {}

    def get(family):
        if family not in built:
            options = dict(FUSION_FAMILIES[family], num_post_fusion_layers=FUSION_FAMILIES[family].get("num_post_fusion_layers", 1))
            path = build_reference_checkpoint(root / family, seed=3, **options)
            reference = GLiNER.from_pretrained(str(path), load_tokenizer=True)
            reference.eval()
            nlp = spacy.blank("en")
            nlp.add_pipe("gliner_ner", config={"model": str(path), "labels": LABELS, "batch_size": 3})
            built[family] = (path, reference, nlp)
        return built[family]

    return get


def _span_probabilities(nlp, texts):
    """Per sentence, the best label probability of every candidate (ours; only to pick thresholds).

    Span models: every span inside the sentence. Token models: every word as a one-word span,
    whose score needs start, end and inside all above the threshold (their minimum)."""
    extractor = nlp.get_pipe("gliner_ner").extractor
    model = extractor.model
    if model.config.bi_encoder:
        extractor.prepare_label_vectors(LABELS)
        labels, prompt = extractor.label_cache.vectors(LABELS), []
    else:
        labels, prompt = None, extractor.inputs.prompt_ids(LABELS)
    out = []
    with torch.inference_mode():
        for text in texts:
            words = split_words(text)
            batch = extractor.inputs.build([extractor.inputs.word_pieces(words)], prompt)
            probabilities = torch.sigmoid(model.score(model.represent(batch), labels)[0])
            if model.config.is_span_model:
                W, K = probabilities.shape[:2]
                inside = (torch.arange(W).view(W, 1) + torch.arange(K).view(1, K)) < len(words)
                out.append(probabilities.amax(-1)[inside])
            else:
                out.append(probabilities.amin(-1).amax(-1))
    return torch.cat(out)


@pytest.mark.parametrize("family", list(FUSION_FAMILIES))
@pytest.mark.parametrize("nested", [False, True])
def test_parity_with_reference(family, nested, fused):
    path, reference, nlp = fused(family)
    texts = crossner_sentences("AI", 4) + crossner_sentences("music", 4)
    probabilities = _span_probabilities(nlp, texts)
    for per_sentence in (2, 6):
        threshold = separating_threshold(probabilities, per_sentence * len(texts) / probabilities.numel())
        nlp.get_pipe("gliner_ner").cfg.update(threshold=threshold, nested=nested)
        expected = reference_spans(reference, texts, LABELS, not nested, threshold)
        ours = our_spans(nlp, texts)
        assert sum(map(len, expected)) > 0, "the comparison must cover real predictions"
        worst = 0.0
        for ref_doc, our_doc in zip(expected, ours):
            ref_doc, our_doc = sorted(ref_doc, key=lambda s: s[:3]), sorted(our_doc, key=lambda s: s[:3])
            assert [s[:3] for s in our_doc] == [s[:3] for s in ref_doc]
            worst = max([worst] + [abs(a[3] - b[3]) for a, b in zip(ref_doc, our_doc)])
        assert worst <= TOL
        print(f"\n[{family} nested={nested}] threshold {threshold:.6f}: {sum(map(len, expected))} spans, max |score diff| {worst:.1e}")


def test_fusion_weights_load_strictly(fused, tmp_path):
    """Every cross_fuser weight is read into our post_fusion layers; a missing one is refused."""
    import shutil

    from spacy_gliner.modeling.checkpoint import CheckpointError, load_checkpoint, read_weights

    path, reference, _ = fused("bi_span_fused")
    checkpoint = load_checkpoint(path)
    ours = checkpoint.model.state_dict()
    fusion_keys = [k for k in reference.model.state_dict() if k.startswith("cross_fuser.")]
    assert fusion_keys and checkpoint.model.applies_post_fusion
    for key in fusion_keys:
        assert torch.equal(ours["post_fusion." + key[len("cross_fuser."):]], reference.model.state_dict()[key])

    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    weights = read_weights(broken)
    del weights[fusion_keys[0]]
    (broken / "model.safetensors").unlink(missing_ok=True)
    torch.save(weights, broken / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="missing weights"):
        load_checkpoint(broken)


def test_uni_encoder_holds_fusion_weights_unused(fused):
    """The reference never calls a uni-encoder's cross_fuser: neither do we (parity above shows
    the scores agree); the weights are still loaded, so saving writes them back."""
    from spacy_gliner.modeling.checkpoint import load_checkpoint

    path, _, _ = fused("uni_span_fused")
    checkpoint = load_checkpoint(path)
    assert hasattr(checkpoint.model, "post_fusion") and not checkpoint.model.applies_post_fusion


def test_saved_checkpoint_round_trips(fused, tmp_path):
    """Saving writes the reference's names back: the reference loads our copy and agrees."""
    from gliner import GLiNER

    from spacy_gliner.modeling.checkpoint import load_checkpoint, save_checkpoint

    path, reference, _ = fused("bi_span_fused")
    save_checkpoint(load_checkpoint(path), tmp_path / "copy")
    config = json.loads((tmp_path / "copy" / "gliner_config.json").read_text())
    assert config["post_fusion_schema"] == "l2l-l2t-t2t" and config["num_post_fusion_layers"] == 1
    reloaded = GLiNER.from_pretrained(str(tmp_path / "copy"), load_tokenizer=True)
    original = reference.model.state_dict()
    for key, value in reloaded.model.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_label_retrieval_is_refused(fused):
    path, _, _ = fused("bi_span_fused")
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="post-fusion"):
        nlp.add_pipe("gliner_ner", config={"model": str(path), "labels": LABELS, "label_top_k": 2})


def test_label_chunks_do_not_split_the_fused_label_set(fused):
    """Labels attend to each other: a small label_chunk_size must not change any score."""
    path, _, nlp = fused("bi_span_fused")
    texts = crossner_sentences("AI", 3)
    nlp.get_pipe("gliner_ner").cfg.update(threshold=0.0, nested=True)
    whole = our_spans(nlp, texts)
    nlp.get_pipe("gliner_ner").extractor.label_chunk_size = 2
    try:
        assert our_spans(nlp, texts) == whole
    finally:
        nlp.get_pipe("gliner_ner").extractor.label_chunk_size = 4096


def test_head_count_mismatch_is_refused(tmp_path):
    from spacy_gliner.modeling.checkpoint import load_checkpoint

    path = build_reference_checkpoint(tmp_path / "odd", seed=3, span_mode="markerV0", hidden_size=256, bi=True,
                                      post_fusion_schema="l2t", num_post_fusion_layers=1)
    with pytest.raises(ValueError, match="reference gliner package cannot run it either|cannot run in the reference"):
        load_checkpoint(path)


def test_bad_schema_is_refused(tmp_path):
    from spacy_gliner.modeling.config import GlinerConfig, UnsupportedCheckpointError

    with pytest.raises(UnsupportedCheckpointError, match="l2x"):
        GlinerConfig.from_dict({"post_fusion_schema": "l2l-l2x", "labels_encoder": "x"})
