"""gliner_relex trains: entity + adjacency + relation losses on real CoNLL04 sentences, saved and reloaded."""
from pathlib import Path

import pytest
import spacy
from spacy.training import Example

from support import DATA, minilm_dir

torch = pytest.importorskip("torch")

CONLL04_TRAIN = DATA / "conll04" / "conll04_train.json"


@pytest.fixture(scope="module")
def conll04_docs():
    if not CONLL04_TRAIN.exists():
        pytest.skip("CoNLL04 missing")
    from spacy_gliner.training.convert import convert

    db, _ = convert("conll04", CONLL04_TRAIN, limit=60, progress=False, warn=False)
    return db


def relex_examples(db, nlp, count):
    """The ``count`` shortest sentences with gold relations and at least 3 entities (6 candidate
    pairs per relation label): short, because the test budget is CPU seconds."""
    docs = sorted((d for d in db.get_docs(nlp.vocab) if d._.gliner_relations and len(d.ents) >= 3), key=len)[:count]
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def strict(doc):
    from spacy_gliner.doc_relations import get_relation_tuples

    return {(hs, he, ts, te, label) for hs, he, ts, te, label, _ in get_relation_tuples(doc)}


def new_relex(**training):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={
        "new_model": {"encoder": minilm_dir(), "hidden_size": 384, "num_rnn_layers": 0, "relations_layer": "mlp"},
        "training": {"encoder_lr": 5e-5, "head_lr": 5e-4, "seed": 2, **training},
    })
    return nlp


@pytest.fixture(scope="module")
def trained(conll04_docs):
    """A new relex GLiNER on MiniLM, fitted for 50 steps on 4 real CoNLL04 sentences."""
    nlp = new_relex()
    examples = relex_examples(conll04_docs, nlp, 4)
    nlp.initialize(lambda: examples)
    relex = nlp.get_pipe("gliner_relex")
    losses, parts = loss_and_parts(relex, examples)
    for step in range(50):
        nlp.update(examples, losses={})
    loss, loss_parts = loss_and_parts(relex, examples)
    return nlp, examples, [losses, loss], [parts, loss_parts]


def loss_and_parts(relex, examples):
    """What ``relex.get_loss(examples)`` computes (one training batch, no gradient), with its terms."""
    batch = relex._training_batch(examples)
    with torch.no_grad():
        parts = relex._get_trainer().loss_parts(batch)
    return float(sum(parts.values()).item()), {name: float(value) for name, value in parts.items()}


def test_training_fits_gold_relations(trained):
    """Loss falls, and the fitted model finds the gold relations: end to end (its own entities) and
    between the gold entities (use_doc_ents). An untrained model finds no entity at threshold 0.5,
    hence no relation."""
    nlp, examples, losses, parts = trained
    relex = nlp.get_pipe("gliner_relex")
    assert set(relex.relation_labels) == {r[4] for eg in examples for r in eg.reference._.gliner_relations}
    gold_labels = {e.label_ for eg in examples for e in eg.reference.ents}
    assert set(relex.labels) == gold_labels <= {"person", "location", "organization", "other"}, "labels come from the gold data"
    assert set(parts[0]) == {"entity", "relation", "adjacency"}, "all three losses are computed"
    assert losses[1] < 0.3 * losses[0]
    assert parts[1]["entity"] < 0.2 * parts[0]["entity"] and parts[1]["relation"] < 0.5 * parts[0]["relation"]
    gold = [strict(eg.reference) for eg in examples]
    total = sum(map(len, gold))
    predicted = [strict(doc) for doc in nlp.pipe(eg.reference.text for eg in examples)]
    found = sum(len(p & g) for p, g in zip(predicted, gold))
    wrong = sum(len(p - g) for p, g in zip(predicted, gold))
    relex.cfg["use_doc_ents"] = True
    try:
        given = [strict(relex(eg.reference.copy())) for eg in examples]
    finally:
        relex.cfg["use_doc_ents"] = False
    found_given = sum(len(p & g) for p, g in zip(given, gold))
    wrong_given = sum(len(p - g) for p, g in zip(given, gold))
    print(f"\nloss {losses[0]:.1f} -> {losses[1]:.1f}; parts {parts}; relations end to end {found}/{total} "
          f"(+{wrong} wrong), between gold entities {found_given}/{total} (+{wrong_given} wrong)")
    # Measured (seed 2, 50 steps, 4 sentences, 9 gold relations; loss 86 -> 24, entity part 61 -> 8.7,
    # relation part 10 -> 5.0): end to end 9 found (9 wrong); between the gold entities 9 found
    # (9 wrong), where predicting all 60 candidates (30 ordered pairs x 2 labels) gives 9 found, 51 wrong.
    # One short run on 4 sentences depends on its dropout masks: with seeds 1, 2 and 4 it finds
    # 9, 9 and 9 end to end, with seed 3 only 4 (dropout 0: 5).
    assert found >= total / 2
    assert found_given >= 0.75 * total and wrong_given <= 1.5 * found_given


def test_trained_relex_round_trips_through_disk(trained, tmp_path):
    nlp, examples, _, _ = trained
    texts = [eg.reference.text for eg in examples]
    before = [(strict(doc), [(e.start, e.end, e.label_) for e in doc.ents]) for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "relex")
    loaded = spacy.load(tmp_path / "relex")
    after = [(strict(doc), [(e.start, e.end, e.label_) for e in doc.ents]) for doc in loaded.pipe(texts)]
    assert after == before and any(rels for rels, _ in before)
    scores = [r.score for doc in loaded.pipe(texts) for r in doc._.relations]
    assert scores == [r.score for doc in nlp.pipe(texts) for r in doc._.relations]


def test_relex_scorer_is_strict(trained):
    from spacy_gliner.components.relex import score_relations

    nlp, examples, _, _ = trained
    gold = examples[0].reference
    perfect = Example(nlp.make_doc(gold.text), gold)
    perfect.predicted._.gliner_relations = [list(r) for r in gold._.gliner_relations]
    assert score_relations([perfect])["rel_f"] == 1.0
    shifted = Example(nlp.make_doc(gold.text), gold)
    from spacy_gliner.doc_relations import get_relation_tuples, set_relations

    hs, he, ts, te, label, score = get_relation_tuples(gold)[0]
    set_relations(shifted.predicted, [(hs, he + 1 if he < len(gold) else he - 1, ts, te, label, score)])
    assert score_relations([shifted])["rel_p"] == 0.0


def test_relations_and_labels_come_from_data_or_fail_clearly(conll04_docs):
    nlp = new_relex()
    no_relations = [Example(nlp.make_doc(d.text), d) for d in conll04_docs.get_docs(nlp.vocab) if not d._.gliner_relations][:2]
    for eg in no_relations:
        assert len(eg.reference.ents)
    with pytest.raises(ValueError, match="no relation labels"):
        nlp.initialize(lambda: no_relations)
    with pytest.raises(ValueError, match="exactly one of 'model'"):
        spacy.blank("en").add_pipe("gliner_relex", config={"relations": ["x"], "labels": ["y"]})
    with pytest.raises(ValueError, match="unknown setting"):
        spacy.blank("en").add_pipe("gliner_relex", config={"new_model": {"encoder": "x"}, "training": {"lr": 1}})
    with pytest.raises(ValueError, match="remove 'label_encoder'"):
        spacy.blank("en").add_pipe("gliner_relex", config={"new_model": {"encoder": "x", "label_encoder": "x"}})


@pytest.fixture(scope="module")
def reference_relex(tmp_path_factory):
    gliner = pytest.importorskip("gliner")
    torch.manual_seed(11)
    model = gliner.GLiNER.from_config(dict(model_name=minilm_dir(), max_width=12, span_mode="markerV0",
                                           hidden_size=256, relations_layer="mlp"))
    model.eval()
    path = tmp_path_factory.mktemp("ref_relex") / "mlp"
    model.save_pretrained(str(path))
    return model, path


def test_losses_match_the_reference(reference_relex, conll04_docs):
    """Fine-tuning a relex checkpoint: on the same batch (our sampled prompts, gold pairs and
    negatives, given to the reference as labels / adj_matrix / rel_matrix) our entity + adjacency +
    relation loss equals the reference UniEncoderSpanRelexModel's training loss."""
    reference, path = reference_relex
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={"model": str(path), "training": {"focal_alpha": 0.6, "focal_gamma": 1.0,
                                                                         "relation_focal_alpha": 0.3}})
    examples = relex_examples(conll04_docs, nlp, 4)
    nlp.initialize(lambda: examples)
    relex = nlp.get_pipe("gliner_relex")
    batch = relex._training_batch(examples)
    assert batch.relation_targets.sum() > 0 and batch.pair_mask.sum() > batch.relation_targets.sum()
    with torch.no_grad():
        parts = relex._get_trainer().loss_parts(batch)
        ours = sum(parts.values())
        encoded = batch.entity.encoded
        B, W, K = batch.entity.position_mask.shape
        starts = torch.arange(W).view(W, 1).expand(W, K)
        span_idx = torch.stack((starts, starts + torch.arange(K).view(1, K)), -1).reshape(1, W * K, 2).expand(B, -1, -1)
        out = reference.model(
            input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, words_mask=encoded.words_mask,
            text_lengths=encoded.num_words.view(B, 1), span_idx=span_idx,
            span_mask=batch.entity.position_mask.reshape(B, W * K).bool(), labels=batch.entity.targets,
            adj_matrix=batch.adjacency, rel_matrix=batch.relation_targets * batch.pair_mask.unsqueeze(-1),
            threshold=0.5, adjacency_threshold=0.5, alpha=0.6, gamma=1.0, rel_alpha=0.3, rel_gamma=1.0,
            reduction="sum", masking="none",
        )
    assert set(parts) == {"entity", "relation", "adjacency"}
    print(f"\nours {float(ours):.6f} reference {float(out.loss):.6f} parts { {k: float(v) for k, v in parts.items()} }")
    assert abs(float(ours) - float(out.loss)) <= 1e-5 * abs(float(out.loss))


@pytest.mark.parametrize("fmt, source", [
    ("conll04", "conll04/conll04_dev.json"), ("crossre", "crossre/news-dev.json"), ("scierc", "scierc/dev.json"),
])
def test_convert_command_writes_gold_relations_for_training(fmt, source, tmp_path):
    """`python -m spacy_gliner.training.convert <format> <input> <output.spacy>`: the DocBin carries the
    gold entities and, in doc._.gliner_relations, the gold relations training reads."""
    from spacy.tokens import DocBin

    from spacy_gliner.training.convert import main
    from spacy_gliner.training.corpus_formats.dispatch import read_corpus

    out = tmp_path / f"{fmt}.spacy"
    assert main([fmt, str(DATA / source), str(out), "--limit", "20", "--quiet"]) == 0
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    expected, _ = read_corpus(fmt, DATA / source, warn=False, limit=20)
    assert len(docs) == len(expected) == 20
    from spacy_gliner.doc_relations import get_relation_tuples

    assert [get_relation_tuples(d) for d in docs] == [get_relation_tuples(e) for e in expected]
    assert sum(len(get_relation_tuples(d)) for d in docs) > 0
    for doc in docs:
        ents = {(e.start, e.end) for e in doc.spans["sc"]}
        for hs, he, ts, te, label, score in get_relation_tuples(doc):
            assert (hs, he) in ents and (ts, te) in ents and label and score == 1.0


def test_spacy_train_cli_with_the_relex_config(conll04_docs, tmp_path):
    from spacy.cli.train import train

    conll04_docs.to_disk(tmp_path / "train.spacy")
    train(
        Path(__file__).resolve().parents[2] / "component_configs" / "gliner_relex_train.cfg",
        tmp_path / "out",
        overrides={
            "paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "train.spacy"),
            "paths.encoder": minilm_dir(), "training.max_steps": 2, "training.eval_frequency": 2,
            "corpora.dev.limit": 4, "corpora.train.limit": 16,
        },
    )
    nlp = spacy.load(tmp_path / "out" / "model-last")
    relex = nlp.get_pipe("gliner_relex")
    assert relex.relation_labels and set(relex.relation_labels) <= {"work for", "kill", "organization based in", "live in", "located in"}
    assert relex.extractor.config.relations_layer == "mlp"
    doc = nlp("John Smith works for Acme Corp in Boston .")
    assert doc._.relations is not None and len(doc.spans["sc"].attrs["scores"]) == len(doc.spans["sc"])
