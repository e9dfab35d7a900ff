"""gliner_linker training: contrastive loss, update / get_loss, stale entity embeddings, spacy train,
the linking-corpus converter and reader.

The model is a bi-encoder GLiNER on the real MiniLM encoder with random (seeded) heads; the data
are real AIDA CoNLL-YAGO training sentences from shared/data.
"""
import json
import random

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import DocBin, Span
from spacy.training import Example

import spacy_gliner.components.linker  # noqa: F401  (registers the factory without the entry point)
from spacy_gliner.components.linker import NIL
from support import DATA, minilm_dir

EXACT_AND_FUZZY = {
    "@misc": "spacy_gliner.MergedCandidates.v1", "k": 30,
    "generators": {"exact": {"@misc": "spacy_gliner.ExactAliasCandidates.v1", "k": 10},
                   "fuzzy": {"@misc": "spacy_gliner.FuzzyCandidates.v1", "k": 20, "min_score": 0.3}},
}
TOY_KB = [
    {"id": "Q90", "name": "Paris", "types": ["city"], "prior": 50, "alias_priors": {"Paris": 40}},
    {"id": "Q47899", "name": "Paris Hilton", "types": ["person"], "prior": 10, "alias_priors": {"Paris": 2}},
    {"id": "Q142", "name": "France", "types": ["country"], "prior": 60},
    {"id": "Q76", "name": "Barack Obama", "description": "44th president of the United States", "aliases": ["Obama"]},
    {"id": "Q312", "name": "Apple Inc.", "types": ["company"], "aliases": ["Apple"], "prior": 20},
    {"id": "Q89", "name": "apple", "types": ["fruit"], "aliases": ["Apple"], "prior": 5},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from spacy_gliner.modeling.checkpoint import save_checkpoint
    from spacy_gliner.modeling.new_model import new_checkpoint

    directory = tmp_path_factory.mktemp("linker_train_model") / "bi"
    checkpoint = new_checkpoint(minilm_dir(), label_encoder=minilm_dir(), hidden_size=128, max_width=4, dropout=0.1)
    save_checkpoint(checkpoint, directory)
    return directory


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def mentions_only(gold):
    """The predicted side of linking on given mentions: gold offsets and labels, no kb_id."""
    from spacy_gliner.training.convert_linking import mention_example

    return mention_example(gold).predicted


def toy_example(nlp):
    text = "Obama visited Paris and bought an Apple laptop in France ."
    reference = nlp.make_doc(text)
    reference.ents = [Span(reference, 0, 1, "PER", kb_id="Q76"), Span(reference, 2, 3, "LOC", kb_id="Q90"),
                      Span(reference, 6, 7, "ORG", kb_id="Q312"), Span(reference, 9, 10, "LOC", kb_id="Q142")]
    return Example(mentions_only(reference), reference)


# -- the loss ----------------------------------------------------------------------------------------
def test_contrastive_linking_loss_matches_its_definition():
    from spacy_gliner.training.losses import contrastive_linking_loss

    torch.manual_seed(0)
    logits = torch.randn(3, 5)
    gold = torch.tensor([1, -1, 4])  # mention 1 is NIL
    own = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    linked = logits[[0, 2]]
    infonce_batch = -(linked[[0, 1], [1, 4]] - torch.logsumexp(linked, dim=1)).mean()
    masked = linked.masked_fill(~own[[0, 2]], float("-inf"))
    infonce_own = -(masked[[0, 1], [1, 4]] - torch.logsumexp(masked, dim=1)).mean()
    targets = torch.zeros(3, 5)
    targets[0, 1] = targets[2, 4] = 1.0
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")[own].mean()
    got = contrastive_linking_loss(logits, gold, own, in_batch_negatives=True, binary_weight=0.5)
    assert got.item() == pytest.approx((infonce_batch + 0.5 * bce).item(), rel=1e-5)
    got = contrastive_linking_loss(logits, gold, own, in_batch_negatives=False, binary_weight=0.0)
    assert got.item() == pytest.approx(infonce_own.item(), rel=1e-5)
    # Only NIL mentions: only the binary part, pushing every candidate down.
    nil = contrastive_linking_loss(logits, torch.tensor([-1, -1, -1]), own, binary_weight=1.0)
    assert nil.item() == pytest.approx(torch.nn.functional.softplus(logits[own]).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="shapes disagree"):
        contrastive_linking_loss(logits, gold[:2], own)


# -- update, stale embeddings, serialization ------------------------------------------------------
def test_update_trains_both_towers_and_never_uses_stale_entity_vectors(model_dir, tmp_path):
    from spacy_gliner.kb.entities import entity_text

    kb = write_jsonl(tmp_path / "kb.jsonl", TOY_KB)
    nlp = spacy.blank("en")
    linker = nlp.add_pipe("gliner_linker", config={
        "model": str(model_dir), "kb": str(kb), "threshold": 0.0, "candidates": EXACT_AND_FUZZY,
        "training": {"encoder_lr": 1e-4, "head_lr": 1e-3, "feature_lr": 0.1}})
    example = toy_example(nlp)
    linked = nlp(mentions_only(example.reference))
    before_scores = [e._.gliner_candidates for e in linked.ents]
    old_id = linker.store.encoder_id
    model = linker.encoder.model
    label_weight = model.label_encoder.transformer.embeddings.word_embeddings.weight.detach().clone()
    text_weight = model.text_encoder.transformer.encoder.layer[0].output.dense.weight.detach().clone()
    nlp.initialize(lambda: [example])
    losses = {}
    for _ in range(2):
        nlp.update([example], losses=losses)
    assert losses["gliner_linker"] > 0
    # Both towers and the mixing weights moved.
    assert not torch.equal(label_weight, model.label_encoder.transformer.embeddings.word_embeddings.weight)
    assert not torch.equal(text_weight, model.text_encoder.transformer.encoder.layer[0].output.dense.weight)
    assert set(linker.cfg["feature_weights"]) == {"prior", "string"}
    assert all(w != 0.0 for w in linker.cfg["feature_weights"].values())
    # The store made before training is gone; the next use recomputes it with the new label tower.
    assert linker._store is None
    store = linker.store
    assert store.encoder_id != old_id and store.encoder_id == linker.encoder.encoder_id
    texts = [entity_text(e) for e in linker.kb.iter_entities()]
    fresh = linker.encoder.encode_entities(texts)
    assert np.allclose(np.asarray(store.vectors, dtype=np.float32), fresh, atol=2e-2)
    after = nlp(mentions_only(example.reference))
    assert [e._.gliner_candidates for e in after.ents] != before_scores
    # Saved and loaded: same weights, same mixing, same scores; the store on disk matches the weights.
    nlp.to_disk(tmp_path / "trained")
    saved = json.loads((tmp_path / "trained" / "gliner_linker" / "embeddings" / "embeddings.json").read_text())
    assert saved["encoder_id"] == linker.encoder.encoder_id
    loaded = spacy.load(tmp_path / "trained")
    again = loaded(mentions_only(example.reference))
    restored = loaded.get_pipe("gliner_linker").cfg["feature_weights"]
    assert restored == pytest.approx(linker.cfg["feature_weights"], rel=1e-6)
    assert [[i for i, _ in e._.gliner_candidates] for e in again.ents] == [[i for i, _ in e._.gliner_candidates] for e in after.ents]
    assert [s for e in again.ents for _, s in e._.gliner_candidates] == pytest.approx(
        [s for e in after.ents for _, s in e._.gliner_candidates], abs=1e-3)


def test_training_data_problems_are_clear_errors(model_dir, tmp_path):
    kb = write_jsonl(tmp_path / "kb.jsonl", TOY_KB)
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(kb)})
    reference = nlp.make_doc("Obama visited Paris .")
    reference.ents = [Span(reference, 0, 1, "PER"), Span(reference, 2, 3, "LOC")]  # NER only: no kb_id
    with pytest.raises(ValueError, match="no gold links.*convert_linking"):
        nlp.initialize(lambda: [Example(mentions_only(reference), reference)])
    with pytest.raises(ValueError, match="training.negatives"):
        spacy.blank("en").add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(kb),
                                                             "training": {"negatives": -1}})
    with pytest.raises(ValueError, match="unknown setting.*learning_rate"):
        spacy.blank("en").add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(kb),
                                                             "training": {"learning_rate": 1.0}})
    with pytest.raises(ValueError, match="features"):
        spacy.blank("en").add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(kb), "features": ["popularity"]})
    # A NIL mention with candidates teaches "not these"; a mention of an unknown id is skipped in update.
    nil_ref = nlp.make_doc("Paris is nice .")
    nil_ref.ents = [Span(nil_ref, 0, 1, "LOC", kb_id=NIL)]
    linker = nlp.get_pipe("gliner_linker")
    assert linker.update([Example(mentions_only(nil_ref), nil_ref)])["gliner_linker"] > 0


# -- learning on real data ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def aida_sample(tmp_path_factory):
    """32 AIDA CoNLL-YAGO *training* sentences with links, and a KB of every entity linked in the
    first 30 training documents (aliases and priors from them)."""
    kb, gold = aida_linking_sample(tmp_path_factory.mktemp("aida_kb"), documents=30)
    return kb, gold[:32]


def aida_linking_sample(directory, documents: int, min_links: int = 1):
    """(KB ``directory/kb.jsonl`` of every entity linked in the first ``documents`` AIDA CoNLL-YAGO
    training documents, their sentences with at least ``min_links`` gold links, shuffled)."""
    from spacy_gliner.kb.linking_benchmarks import entities_from_documents, load_benchmark
    from spacy_gliner.kb.entities import write_entities_jsonl
    from spacy_gliner.training.convert_linking import linked_docs

    if not (DATA / "aida_yago2_annotations").is_dir():
        pytest.skip("shared/data linking corpora not available")
    read = load_benchmark("aida-yago2-train", DATA)[:documents]
    kb = directory / "kb.jsonl"
    write_entities_jsonl(entities_from_documents(read, read), kb)
    gold = [d for d in linked_docs(read, spacy.blank("en"), by="line") if sum(e.kb_id_ != NIL for e in d.ents) >= min_links]
    random.Random(0).shuffle(gold)
    return kb, gold


def link_accuracy(nlp, gold_docs):
    right = total = 0
    for predicted, gold in zip(nlp.pipe(mentions_only(g) for g in gold_docs), gold_docs):
        for ent, gold_ent in zip(predicted.ents, gold.ents):
            if gold_ent.kb_id_ != NIL:
                total += 1
                right += ent.kb_id_ == gold_ent.kb_id_
    return right / total


def test_training_on_real_aida_sentences_lowers_the_loss_and_links_better(model_dir, aida_sample):
    """The bi-encoder alone (no prior / string features): what it learns is its own. Encoders are
    frozen here (``encoder_lr = 0``) to keep the test fast; the test above trains them too.
    Measured when written (20 steps of 8 sentences): loss 3.8 -> 1.9, accuracy 0.03 -> 0.35 over the
    72 linked mentions (each with up to 30 exact / fuzzy candidates)."""
    kb, gold = aida_sample
    torch.manual_seed(0)
    nlp = spacy.blank("en")
    linker = nlp.add_pipe("gliner_linker", config={
        "model": str(model_dir), "kb": str(kb), "threshold": 0.0, "features": [], "candidates": EXACT_AND_FUZZY,
        "training": {"encoder_lr": 0.0, "head_lr": 2e-3, "temperature": 0.1, "negatives": 3, "max_mentions": 16}})
    examples = [Example(mentions_only(g), g) for g in gold]
    fixed_batches = [examples[i : i + 8] for i in range(0, len(examples), 8)]
    nlp.initialize(lambda: examples)

    def loss() -> float:
        return sum(linker.get_loss(batch) for batch in fixed_batches) / len(fixed_batches)

    accuracy_before, loss_before = link_accuracy(nlp, gold), loss()
    for step in range(20):
        nlp.update(random.Random(step).sample(examples, 8))
    accuracy_after, loss_after = link_accuracy(nlp, gold), loss()
    assert loss_after < 0.7 * loss_before, (loss_before, loss_after)
    assert accuracy_after >= accuracy_before + 0.15, (accuracy_before, accuracy_after)


# -- spacy train, converter, reader ----------------------------------------------------------------
def test_spacy_train_with_the_project_config(model_dir, tmp_path):
    from pathlib import Path

    from spacy.cli.train import train

    kb = write_jsonl(tmp_path / "kb.jsonl", TOY_KB)
    nlp = spacy.blank("en")
    db = DocBin(store_user_data=True)
    for _ in range(4):
        db.add(toy_example(nlp).reference)
    db.to_disk(tmp_path / "train.spacy")
    config = Path(__file__).resolve().parents[2] / "component_configs" / "gliner_linker_train.cfg"  # the linking project's
    train(config, tmp_path / "out", overrides={
        "paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "train.spacy"),
        "paths.model": str(model_dir), "paths.kb": str(kb), "training.max_steps": 3, "training.eval_frequency": 2,
        "components.gliner_linker.training.encoder_lr": 0.0})
    trained = spacy.load(tmp_path / "out" / "model-last")
    linker = trained.get_pipe("gliner_linker")
    assert linker.cfg["feature_weights"] and linker.cfg["temperature"] == pytest.approx(0.1)
    doc = trained(mentions_only(toy_example(trained).reference))
    assert all(e.kb_id_ != "" and e._.gliner_candidates for e in doc.ents)


def test_converter_and_reader_give_gold_links_and_unlinked_mentions(tmp_path):
    from spacy_gliner.training.convert_linking import create_linking_corpus_reader, main

    if not (DATA / "elevant_el_benchmarks").is_dir():
        pytest.skip("shared/data linking corpora not available")
    out = tmp_path / "kore50.spacy"
    assert main(["kore50", str(out), "--data-dir", str(DATA), "--quiet"]) == 0
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    assert len(docs) == 50
    first = docs[0]
    assert [(e.text, e.kb_id_) for e in first.ents] == [("Steve", "Q19837"), ("Apple", "Q312"), ("Stanford", "Q41506")]
    assert first.ents[0].label_ == "person"
    assert sum(e.kb_id_ == NIL for d in docs for e in d.ents) == 1  # KORE50's one label without a QID
    examples = list(create_linking_corpus_reader(str(out), limit=3)(nlp))
    assert len(examples) == 3
    assert [(e.start, e.end, e.label_) for e in examples[0].predicted.ents] == [(e.start, e.end, e.label_) for e in first.ents]
    assert all(e.kb_id_ == "" for e in examples[0].predicted.ents)
    assert main(["no-such-corpus", str(out), "--data-dir", str(DATA), "--quiet"]) == 2
    with pytest.raises(FileNotFoundError, match="convert_linking"):
        list(create_linking_corpus_reader(str(tmp_path / "missing.spacy"))(nlp))
