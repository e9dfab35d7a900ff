"""Training the token form of the generative label decoder (UniEncoderTokenDecoder replica,
tests/zoo/families.py): token loss, span-layer loss and decoder loss together equal the
reference's training loss on the same batch, and a few updates lower it."""
from collections import Counter

import pytest
import spacy
import torch

from training.test_decoder_training import crossner_docs, short_examples  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def token_decoder_hub_id(hub_families):
    return hub_families("token_decoder")


def test_token_span_and_decoder_loss_match_the_reference(token_decoder_hub_id, crossner_docs):  # noqa: F811
    """On our batch (sampled prompts, our span table of gold and random spans; the reference's
    own processor tokenises the decoder inputs and labels) ``decoder_loss_coef * decoder loss +
    token_loss_coef * (token_loss_coef * token loss + span_loss_coef * span loss)`` equals the
    reference UniEncoderTokenDecoderModel's training loss."""
    from gliner import GLiNER

    reference = GLiNER.from_pretrained(token_decoder_hub_id)
    reference.eval()
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": token_decoder_hub_id, "training": {"focal_alpha": 0.6, "focal_gamma": 1.0}})
    examples = short_examples(crossner_docs, nlp, 3)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("gliner_ner")
    batch = ner._training_batch(examples)
    table = batch.span_table
    assert batch.decoder is not None and len(batch.decoder.selected) >= 4
    assert int(table.span_mask.sum()) > len(batch.decoder.selected)  # random spans beside the gold ones
    gold_texts = [ner._gold_text(eg, Counter()) for eg in examples]  # what the batch was built from
    words = [text.words for text in gold_texts]
    gold = [  # the reference's decoder labels: each example's prompted gold spans, sorted by position
        label for text, labels in zip(gold_texts, batch.sample.labels)
        for _, _, label in sorted(span for span in text.spans if span[2] in labels)
    ]
    processor = reference.data_processor
    decoder_inputs = processor.tokenize_inputs(words, batch.sample.labels)
    decoder_labels = processor.prepare_decoder_labels(gold)
    with torch.no_grad():
        ours = ner._get_trainer().loss(batch)
        encoded = batch.encoded
        assert torch.equal(decoder_inputs["input_ids"], encoded.input_ids)
        out = reference.model(
            input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, words_mask=encoded.words_mask,
            text_lengths=encoded.num_words.view(-1, 1), labels=batch.targets,
            span_idx=table.span_idx, span_mask=table.span_mask, span_labels=table.span_labels,
            decoder_input_ids=decoder_inputs["decoder_input_ids"], decoder_words_mask=decoder_inputs["decoder_words_mask"],
            decoder_labels_ids=decoder_labels["input_ids"], decoder_labels_mask=decoder_labels["attention_mask"],
            decoder_labels=decoder_labels["labels"], alpha=0.6, gamma=1.0, reduction="sum",
        )
    assert out.decoder_loss is not None and float(out.decoder_loss) > 0
    assert float(ours) == pytest.approx(float(out.loss), rel=1e-5)


def test_an_update_trains_the_token_scorer_the_span_layer_and_the_decoder(token_decoder_hub_id, crossner_docs):  # noqa: F811
    """One ``nlp.update``: every part of the combined loss sends gradients to its weights. (The
    replica's spread scores make its loss swing under dropout, so no loss trend is asserted.)"""
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": token_decoder_hub_id, "training": {"head_lr": 1e-3, "encoder_lr": 0, "seed": 3}})
    examples = short_examples(crossner_docs, nlp, 3)
    nlp.initialize(lambda: examples)
    model = nlp.get_pipe("gliner_ner").extractor.model
    parts = {
        "token scorer": model.token_scorer.out_mlp[0].weight,
        "span layer": model.span_head.out_project[0].weight,
        "decoder": model.label_decoder.language_model.transformer.h[0].mlp.c_fc.weight,
        "decoder projection": model.label_decoder.projection[0].weight,
    }
    before = {name: weight.detach().clone() for name, weight in parts.items()}
    unused = model.label_projection[0].weight.detach().clone()  # saved for the reference, never applied
    losses = nlp.update(examples, losses={})
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert [name for name, weight in parts.items() if torch.equal(weight, before[name])] == []
    assert torch.equal(model.label_projection[0].weight, unused)
