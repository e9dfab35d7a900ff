"""gliner_ner trains: spaCy's training loop, the GLiNER recipe, bad data handled."""
import warnings
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from support import DATA, minilm_dir

CONFIGS = Path(__file__).resolve().parents[2] / "component_configs"


@pytest.fixture(scope="module")
def bc5cdr_docs():
    from spacy_gliner.training.convert import convert

    db, _ = convert("bio", DATA / "gner_ner_bundle" / "bc5cdr" / "train.txt", limit=64, progress=False, warn=False)
    return db


def examples_from(db, nlp, count):
    docs = list(db.get_docs(nlp.vocab))[:count]
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs if len(doc.ents)]


def new_pipeline(**training):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner_ner",
        config={
            "new_model": {"encoder": minilm_dir(), "hidden_size": 384, "num_rnn_layers": 0},
            "training": {"encoder_lr": 3e-5, "head_lr": 2e-4, **training},
        },
    )
    return nlp


def gold_spans(examples):
    return [{(s.start, s.end, s.label_) for s in eg.reference.ents} for eg in examples]


def test_training_fits_gold_entities(bc5cdr_docs):
    """A new uni-encoder GLiNER on MiniLM learns a handful of real sentences (loss falls, the
    gold entities come out at threshold 0.5): the recipe and its gradients are wired up."""
    nlp = new_pipeline(seed=1)
    examples = examples_from(bc5cdr_docs, nlp, 6)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    assert set(ner.labels) == {"chemical", "disease"}, "labels come from the gold data"
    before = ner.get_loss(examples)
    for _ in range(50):
        nlp.update(examples, losses={})
    after = ner.get_loss(examples)
    # Measured: 646 -> 12 after 50 steps, 8 of 17 gold entities found (an untrained head finds 0).
    assert after < before * 0.1
    predicted = [{(e.start, e.end, e.label_) for e in doc.ents} for doc in nlp.pipe(eg.reference.text for eg in examples)]
    gold = gold_spans(examples)
    found = sum(len(p & g) for p, g in zip(predicted, gold))
    assert found >= 0.3 * sum(map(len, gold))


def test_encoder_and_heads_have_separate_learning_rates():
    nlp = new_pipeline(encoder_lr=1e-5, head_lr=3e-4)
    ner = nlp.get_pipe("gliner_ner")
    trainer = ner._get_trainer()
    rates = {}
    for group in trainer.optimizer.param_groups:
        for parameter in group["params"]:
            rates[id(parameter)] = group["lr"]
    model = ner.extractor.model
    assert {rates[id(p)] for p in model.text_encoder.transformer.parameters()} == {1e-5}
    assert {rates[id(p)] for p in model.span_head.parameters()} == {3e-4}


def test_loss_on_valid_spans_only_equals_the_full_computation(bc5cdr_docs):
    """Training computes the span head only for spans inside their sentence; the spans it skips
    are masked out of the loss, so the loss (no dropout) is the full computation's."""
    import torch

    nlp = new_pipeline()
    examples = examples_from(bc5cdr_docs, nlp, 8)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    trainer = ner._get_trainer()
    batch = ner._training_batch(examples)
    lengths = batch.encoded.num_words
    assert lengths.min() < lengths.max(), "sentences of different lengths: some spans are padding"
    model = trainer.model
    with torch.no_grad():
        reps = model.represent(batch.encoded)
        full = trainer.entity_loss(model.score(reps), batch)
        valid_only = trainer.entity_loss(model.score(reps, only_valid_spans=True), batch)
    assert float(full) > 0
    assert torch.allclose(full, valid_only, rtol=1e-5)


def test_optimizer_is_the_fused_adamw():
    import torch

    trainer = new_pipeline().get_pipe("gliner_ner")._get_trainer()
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.defaults["fused"] is True


def test_cpu_dropout_keeps_the_distribution_and_the_gradient_mask():
    import torch

    from spacy_gliner.modeling.layers import Dropout

    torch.manual_seed(0)
    layer = Dropout(0.4).train()
    x = torch.ones(200_000, requires_grad=True)
    y = layer(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.4) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.6))
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0), "the gradient flows through the kept units only"
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_bi_encoder_training_refreshes_label_cache(bc5cdr_docs):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner_ner",
        config={"new_model": {"encoder": minilm_dir(), "label_encoder": minilm_dir(), "hidden_size": 384}},
    )
    examples = examples_from(bc5cdr_docs, nlp, 4)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    cached = ner.extractor.label_cache.vectors(["chemical"]).clone()
    losses = nlp.update(examples, losses={})
    assert losses["gliner_ner"] > 0
    assert len(ner.extractor.label_cache) == 0, "stale label vectors are dropped after an update"
    nlp(examples[0].reference.text)
    assert not ner.extractor.label_cache.vectors(["chemical"]).allclose(cached)


def test_spacy_train_cli_with_ready_config(bc5cdr_docs, tmp_path):
    from spacy.cli.train import train

    bc5cdr_docs.to_disk(tmp_path / "train.spacy")
    bc5cdr_docs.to_disk(tmp_path / "dev.spacy")
    train(
        CONFIGS / "gliner_ner_bi_encoder_train.cfg",
        tmp_path / "out",
        overrides={
            "paths.train": str(tmp_path / "train.spacy"),
            "paths.dev": str(tmp_path / "dev.spacy"),
            "paths.encoder": minilm_dir(),
            "training.max_steps": 4,
            "training.eval_frequency": 2,
            "corpora.dev.limit": 8,
        },
    )
    nlp = spacy.load(tmp_path / "out" / "model-last")
    ner = nlp.get_pipe("gliner_ner")
    assert set(ner.labels) == {"chemical", "disease"}
    doc = nlp("Aspirin can cause gastric bleeding.")
    assert len(doc.spans["sc"].attrs["scores"]) == len(doc.spans["sc"])


def test_bad_training_data_is_skipped_with_counts(bc5cdr_docs):
    nlp = new_pipeline()
    examples = examples_from(bc5cdr_docs, nlp, 3)
    empty = Example(nlp.make_doc(""), nlp.make_doc(""))
    wide = nlp.make_doc(" ".join(["word"] * 30))
    wide.ents = [wide.char_span(0, len(wide.text), label="chemical")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.initialize(lambda: examples + [empty, Example(nlp.make_doc(wide.text), wide)])
    message = " ".join(str(w.message) for w in caught)
    assert "1 empty documents" in message and "1 gold spans wider than max_width" in message
    # An example whose label was never seen at initialize trains without error.
    unseen = nlp.make_doc("Ibuprofen relieves headache .")
    unseen.ents = [unseen.char_span(0, 9, label="drug")]
    losses = nlp.update(examples + [empty, Example(nlp.make_doc(unseen.text), unseen)], losses={})
    assert losses["gliner_ner"] > 0


def test_missing_encoder_directory_is_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"new_model": {"encoder": "/no/such/encoder"}, "labels": ["x"]})
    with pytest.raises(ValueError, match="encoder directory '/no/such/encoder' does not exist"):
        nlp.initialize()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"new_model": {"encoder": "x"}, "training": {"learning_rate": 1}}, "unknown setting"),
        ({"new_model": {"encoderr": "x"}}, "needs 'encoder'"),
        ({}, "exactly one of 'model'"),
    ],
)
def test_bad_training_config_fails_at_add_pipe(config, message):
    with pytest.raises(ValueError, match=message):
        spacy.blank("en").add_pipe("gliner_ner", config=config)
