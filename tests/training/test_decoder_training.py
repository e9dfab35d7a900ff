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


def test_span_and_decoder_loss_match_the_reference(decoder_hub_id, crossner_docs):
    """On our batch (sampled prompts; the reference's own processor tokenises the decoder inputs
    and labels) ``decoder_loss_coef * decoder loss + span_loss_coef * span loss`` equals the
    reference UniEncoderSpanDecoderModel's training loss."""
    from gliner import GLiNER

    reference = GLiNER.from_pretrained(decoder_hub_id)
    reference.eval()
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": decoder_hub_id, "training": {"focal_alpha": 0.6, "focal_gamma": 1.0}})
    examples = short_examples(crossner_docs, nlp, 3)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    batch = ner._training_batch(examples)
    assert batch.decoder is not None and len(batch.decoder.selected) >= 4
    words = [ner._gold_text(eg, Counter()).words for eg in examples]  # the words the batch was built from
    processor = reference.data_processor
    decoder_inputs = processor.tokenize_inputs(words, batch.sample.labels)
    gold = []  # the gold label of each selected span, in the reference's order
    for row, start, width in batch.decoder.selected.tolist():
        gold.append(batch.sample.labels[row][int(batch.targets[row, start, width].argmax())])
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
