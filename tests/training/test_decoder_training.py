"""Training a generative label decoder model (UniEncoderSpanDecoder replica, tests/zoo/families.py):
the decoder loss beside the span loss equals the reference's training loss on the same batch."""
from collections import Counter

import pytest
import spacy
import torch
from spacy.training import Example

from support import DATA


@pytest.fixture(scope="module")
def decoder_hub_id(hub_families):
    return hub_families("span_decoder")


@pytest.fixture(scope="module")
def crossner_docs():
    from spacy_gliner.training.convert import convert

    db, _ = convert("gliner-json", DATA / "gliner_ner_datasets" / "CrossNER_music" / "dev.json", limit=24, progress=False, warn=False)
    return db


def short_examples(db, nlp, count):
    """The ``count`` shortest sentences with at least two entities: the test budget is CPU seconds."""
    docs = sorted((d for d in db.get_docs(nlp.vocab) if len(d.ents) >= 2), key=len)[:count]
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


@pytest.mark.parametrize("blank", [False, True], ids=["typed", "blank-entity"])
def test_span_and_decoder_loss_match_the_reference(decoder_hub_id, crossner_docs, blank):
    """On our batch (sampled prompts; the reference's own processor tokenises the decoder inputs
    and labels) ``decoder_loss_coef * decoder loss + span_loss_coef * span loss`` equals the
    reference UniEncoderSpanDecoderModel's training loss; in a blank-entity batch (the prompt is
    the single type "entity") too, where the decoder still learns the gold types."""
    from gliner import GLiNER

    reference = GLiNER.from_pretrained(decoder_hub_id)
    reference.eval()
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": decoder_hub_id, "training": {"focal_alpha": 0.6, "focal_gamma": 1.0}})
    examples = short_examples(crossner_docs, nlp, 3)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    ner.extractor.config.blank_entity_prob = 1.0 if blank else 0.0
    batch = ner._training_batch(examples)
    assert batch.decoder is not None and len(batch.decoder.selected) >= 4
    assert (batch.sample.labels == [["entity"]] * len(examples)) == blank
    gold_texts = [ner._gold_text(eg, Counter()) for eg in examples]  # what the batch was built from
    words = [text.words for text in gold_texts]
    processor = reference.data_processor
    decoder_inputs = processor.tokenize_inputs(words, batch.sample.labels)
    gold = []  # the gold type of each selected span, in the reference's order
    for row, start, width in batch.decoder.selected.tolist():
        gold.append(next(label for s, e, label in gold_texts[row].spans if (s, e) == (start, start + width + 1)))
    assert blank or gold == [batch.sample.labels[r][int(batch.targets[r, s, w].argmax())] for r, s, w in batch.decoder.selected.tolist()]
    decoder_labels = processor.prepare_decoder_labels(gold)
    with torch.no_grad():
        ours = ner._get_trainer().loss(batch)
        encoded = batch.encoded
        B, W, K = batch.position_mask.shape
        starts = torch.arange(W).view(W, 1).expand(W, K)
        span_idx = torch.stack((starts, starts + torch.arange(K).view(1, K)), -1).reshape(1, W * K, 2).expand(B, -1, -1)
        assert torch.equal(decoder_inputs["input_ids"], encoded.input_ids)
        out = reference.model(
            input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, words_mask=encoded.words_mask,
            text_lengths=encoded.num_words.view(B, 1), span_idx=span_idx,
            span_mask=batch.position_mask.reshape(B, W * K).bool(), labels=batch.targets,
            decoder_input_ids=decoder_inputs["decoder_input_ids"], decoder_words_mask=decoder_inputs["decoder_words_mask"],
            decoder_labels_ids=decoder_labels["input_ids"], decoder_labels_mask=decoder_labels["attention_mask"],
            decoder_labels=decoder_labels["labels"], alpha=0.6, gamma=1.0, reduction="sum", masking="none",
        )
    assert out.decoder_loss is not None and float(out.decoder_loss) > 0
    assert float(ours) == pytest.approx(float(out.loss), rel=1e-5)


def test_training_lowers_the_decoder_loss(decoder_hub_id, crossner_docs):
    """A few updates on real sentences: the combined loss falls (decoder and heads get gradients)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": decoder_hub_id, "training": {"head_lr": 1e-3, "encoder_lr": 0, "seed": 3}})
    examples = short_examples(crossner_docs, nlp, 3)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    decoder = ner.extractor.model.label_decoder
    before_weights = decoder.language_model.get_input_embeddings().weight.detach().clone()
    before = ner.get_loss(examples)
    for _ in range(8):
        nlp.update(examples, losses={})
    assert ner.get_loss(examples) < before * 0.8
    assert not torch.equal(decoder.language_model.get_input_embeddings().weight, before_weights)


def test_new_decoder_model_trains_saves_and_runs_in_the_reference(decoder_hub_id, crossner_docs, tmp_path):
    """``new_model`` with a base decoder: MiniLM + the GPT-2 replica (pretrained weights kept),
    trained a few steps; the saved checkpoint loads in gliner 0.2.29 and generates our labels."""
    from gliner import GLiNER

    from modeling.test_label_decoder import reference_generation
    from spacy.tokens import Doc
    from support import minilm_dir, split_words

    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={
        "new_model": {"encoder": minilm_dir(), "decoder": "openai-community/gpt2", "hidden_size": 48, "num_rnn_layers": 1},
        "training": {"head_lr": 1e-3, "encoder_lr": 0, "seed": 1},
    })
    examples = short_examples(crossner_docs, nlp, 3)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    base = GLiNER.from_pretrained(decoder_hub_id).model.decoder.decoder_layer.model.transformer.h[0].mlp.c_fc.weight
    assert torch.equal(ner.extractor.model.label_decoder.language_model.transformer.h[0].mlp.c_fc.weight, base)
    before = ner.get_loss(examples)
    for _ in range(5):
        nlp.update(examples, losses={})
    assert ner.get_loss(examples) < before
    nlp.to_disk(tmp_path / "pipeline")
    reference = GLiNER.from_pretrained(str(tmp_path / "pipeline" / "gliner_ner" / "checkpoint"))
    reference.eval()
    text = examples[0].reference.text
    labels = list(ner.labels)
    # threshold 0: every span goes to the decoder (the reference fails on a batch where none does)
    expected = reference_generation(reference, [text], labels, True, 0.0)[0]
    assert expected, "the comparison must cover real predictions"
    ner.cfg["threshold"] = 0.0
    doc = nlp(Doc(nlp.vocab, words=split_words(text)))
    ours = [(s.start, s.end, s.label_, tuple(g)) for s, g in zip(doc.spans["sc"], doc.spans["sc"].attrs["generated_labels"])]
    assert ours == sorted((start, end, label, tuple(g.strip() for g in gen)) for start, end, label, _, gen in expected)
