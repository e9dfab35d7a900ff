"""gliner_linker listening to a shared spaCy ``transformer`` (spacy-transformers): the converted
pipelines' parity with the stand-alone components on real AIDA CoNLL-YAGO sentences, bad input,
and training through the listener (gradient, ``spacy train`` with the ready config).

The checkpoint is the zoo's bi-encoder span replica ``bi_sharp`` (MiniLM towers, random heads
with a sharpened label projection, shared with test_listener through the session fixture).
"""
import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_gliner.components.linker import NIL
from support import crossner_labels

pytest.importorskip("spacy_transformers")

FAMILY = "bi_sharp"
LABELS = crossner_labels("AI")
LINKER = {"threshold": 0.0, "top_k": 10}
LISTENER = {"@architectures": "spacy-transformers.TransformerListener.v1", "upstream": "transformer",
            "grad_factor": 1.0, "pooling": {"@layers": "spacy_gliner.first_subword.v1"}}


@pytest.fixture(scope="module")
def aida(tmp_path_factory):
    """(KB of every entity linked in the first 8 AIDA CoNLL-YAGO training documents, 12 of their
    sentences with at least two gold links, as docs of space-separated words: the transformer then
    reads the subwords the stand-alone text tower reads)."""
    from components.test_linker_training import aida_linking_sample

    kb, gold = aida_linking_sample(tmp_path_factory.mktemp("aida_listener_kb"), documents=8, min_links=2)
    nlp = spacy.blank("en")
    return kb, [spaced(nlp, g, keep_links=True) for g in gold[:12]]


def spaced(nlp, doc, keep_links=False):
    """``doc``'s words separated by single spaces, with its entities (and, if asked, their kb_ids)."""
    out = Doc(nlp.vocab, words=[t.text for t in doc])
    out.ents = [Span(out, e.start, e.end, label=e.label_, kb_id=e.kb_id_ if keep_links else "") for e in doc.ents]
    return out


def mentions(nlp, gold):
    return [spaced(nlp, g) for g in gold]


@pytest.fixture(scope="module")
def converted(checkpoints, aida, tmp_path_factory):
    """The CLI's [transformer, gliner_ner, gliner_linker] pipeline, saved and loaded back (the KB
    copied into it), and the stand-alone [gliner_ner, gliner_linker] on the same checkpoint and KB."""
    from spacy_gliner.cli import main

    kb, _ = aida
    out = tmp_path_factory.mktemp("linker_listener") / "pipeline"
    assert main(["to-listener", str(checkpoints(FAMILY)), str(out), "--labels", ",".join(LABELS), "--kb", str(kb)]) == 0
    shared = spacy.load(out)
    alone = spacy.blank("en")
    alone.add_pipe("gliner_ner", config={"model": str(checkpoints(FAMILY)), "labels": LABELS, "threshold": 0.3})
    alone.add_pipe("gliner_linker", config={"model": str(checkpoints(FAMILY)), "kb": str(kb), **LINKER})
    for nlp in (shared, alone):
        nlp.get_pipe("gliner_ner").cfg["threshold"] = 0.3
        nlp.get_pipe("gliner_linker").cfg.update(LINKER)
    return shared, alone


def links(doc):
    return [(e.start, e.end, e.label_, e.kb_id_) for e in doc.ents], [[i for i, _ in e._.gliner_candidates] for e in doc.ents], \
        np.array([s for e in doc.ents for _, s in e._.gliner_candidates])


def assert_same_links(shared_docs, own_docs):
    found = 0
    for a, b in zip(shared_docs, own_docs):
        ents_a, ranked_a, scores_a = links(a)
        ents_b, ranked_b, scores_b = links(b)
        assert ents_a == ents_b and ranked_a == ranked_b
        np.testing.assert_allclose(scores_a, scores_b, atol=1e-5)
        found += sum(kb_id != NIL for *_, kb_id in ents_a)
    return found


def test_converted_pipeline_links_as_the_standalone_linker(converted, aida):
    """Given mentions (AIDA's gold offsets): same kb_ids, candidates and scores as the stand-alone
    linker, the transformer holding the only copy of the text tower."""
    shared, alone = converted
    _, gold = aida
    assert shared.pipe_names == ["transformer", "gliner_ner", "gliner_linker"]
    assert shared.get_pipe("transformer").listening_components == ["gliner_ner", "gliner_linker"]
    linker = shared.get_pipe("gliner_linker")
    assert linker.encoder.model.text_encoder.transformer is None
    assert len(linker.kb) == len(alone.get_pipe("gliner_linker").kb)  # the KB travelled with the pipeline
    with shared.select_pipes(disable=["gliner_ner"]), alone.select_pipes(disable=["gliner_ner"]):
        linked = assert_same_links(shared.pipe(mentions(shared, gold)), alone.pipe(mentions(alone, gold)))
    assert linked >= 20  # the comparison is not empty


def test_ner_and_linker_both_listening_give_the_standalone_entities_and_links(converted, aida):
    shared, alone = converted
    _, gold = aida
    words = [Doc(shared.vocab, words=[t.text for t in g]) for g in gold]
    shared_docs = list(shared.pipe(words))
    own_docs = list(alone.pipe(Doc(alone.vocab, words=[t.text for t in g]) for g in gold))
    assert_same_links(shared_docs, own_docs)
    assert sum(len(d.ents) for d in shared_docs) >= 10


def test_linker_only_pipeline_from_the_converter(checkpoints, aida, tmp_path):
    """``to-listener --kb`` alone: [transformer, gliner_linker]; neither labels nor KB is an error."""
    from spacy_gliner.cli import main
    from spacy_gliner.components.listener import build_listener_pipeline

    kb, gold = aida
    nlp = build_listener_pipeline(str(checkpoints(FAMILY)), kb=str(kb), linker_settings=LINKER)
    assert nlp.pipe_names == ["transformer", "gliner_linker"]
    doc = nlp(mentions(nlp, gold[:1])[0])
    assert all(e.kb_id_ and e._.gliner_candidates is not None for e in doc.ents)
    with pytest.raises(ValueError, match="give entity labels.*knowledge base"):
        build_listener_pipeline(str(checkpoints(FAMILY)))
    assert main(["to-listener", str(checkpoints(FAMILY)), str(tmp_path / "out")]) == 2


# -- bad input: the same errors as a listening gliner_ner ----------------------------------------------
def listening_linker(nlp, checkpoint, kb, pooling="spacy_gliner.first_subword.v1"):
    return nlp.add_pipe("gliner_linker", config={"model": str(checkpoint), "kb": str(kb), "text_encoder": {
        **LISTENER, "pooling": {"@layers": pooling}}})


def test_listening_linker_without_upstream_transformer_fails_at_initialize(checkpoints, aida):
    nlp = spacy.blank("en")
    listening_linker(nlp, checkpoints(FAMILY), aida[0])
    with pytest.raises(ValueError, match=r"gliner_linker: .*no transformer component in the pipeline \(gliner_linker\) feeds it"):
        nlp.initialize()


def test_listening_linker_on_docs_without_transformer_output_fails_at_call(converted, aida):
    shared, _ = converted
    doc = mentions(shared, aida[1][:1])[0]
    with pytest.raises(ValueError, match=r"gliner_linker: 1 of 1 docs have no transformer output \(doc._.trf_data\)"):
        shared.get_pipe("gliner_linker")(doc)


def test_transformer_of_another_width_fails_naming_both_sizes(checkpoints, aida, tmp_path):
    from components.test_listener import with_narrow_transformer

    nlp = with_narrow_transformer(tmp_path)
    listening_linker(nlp, checkpoints(FAMILY), aida[0])
    with pytest.raises(ValueError, match="gliner_linker: transformer 'transformer' gives 64-wide vectors, but the checkpoint's text tower is 384 wide"):
        nlp.initialize()


def test_listening_linker_refuses_what_cannot_listen(checkpoints, aida):
    """A text_encoder that is no listener, a pooling other than the checkpoint's, a checkpoint
    without two towers: refused at add_pipe, nothing added."""
    from thinc.api import Linear

    from spacy_gliner.components.linker import GlinerLinker

    kb = aida[0]
    with pytest.raises(ValueError, match="gliner_linker: 'text_encoder' must listen to an upstream transformer"):
        GlinerLinker(spacy.blank("en").vocab, model=str(checkpoints(FAMILY)), kb=str(kb), text_encoder=Linear(2, 2))
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=r"gliner_linker: the checkpoint pools subwords into words by 'first'.*reduce_mean"):
        listening_linker(nlp, checkpoints(FAMILY), kb, pooling="reduce_mean.v1")
    with pytest.raises(ValueError, match="uni-encoder GLiNER; entity linking needs a bi-encoder"):
        listening_linker(nlp, checkpoints("uni_marker"), kb)
    assert nlp.pipe_names == []


# -- training through the listener ----------------------------------------------------------------
def gold_examples(nlp, gold):
    return [Example(mention, spaced(nlp, g, keep_links=True)) for mention, g in zip(mentions(nlp, gold), gold)]


def test_gradient_through_the_listener_is_the_mention_towers_own(checkpoints, aida):
    """The gradient gliner_linker sends back into the shared transformer equals the gradient of the
    same linking loss with respect to the stand-alone linker's own text tower (same batch, dropout off)."""
    from components.test_listener import assert_same_gradients, without_dropout
    from spacy_gliner.components.listener import build_listener_pipeline

    kb, gold = aida
    settings = {"training": {"max_mentions": 64}}  # every mention: both sides build the same batch
    alone = spacy.blank("en")
    own = alone.add_pipe("gliner_linker", config={"model": str(checkpoints(FAMILY)), "kb": str(kb), **settings})
    without_dropout(own.encoder.model)
    batch = own._training_batch(gold_examples(alone, gold[:4]))
    own._batch_loss(batch).backward()
    expected = {name: p.grad for name, p in own.encoder.model.text_encoder.transformer.named_parameters()}

    shared = build_listener_pipeline(str(checkpoints(FAMILY)), kb=str(kb), linker_settings=settings)
    tower = shared.get_pipe("transformer").model.transformer
    without_dropout(tower)
    without_dropout(shared.get_pipe("gliner_linker").encoder.model)
    losses = shared.update(gold_examples(shared, gold[:4]), sgd=None)  # the transformer is not stepped: its gradient stays
    assert losses["gliner_linker"] > 0
    assert_same_gradients(expected, tower)


def test_spacy_train_runs_the_linker_listener_config(checkpoints, aida, tmp_path):
    """``spacy train`` on the ready config: [transformer, gliner_linker] trains, saves and loads back."""
    from spacy.cli.train import train
    from spacy.tokens import DocBin
    from spacy.util import load_config
    from support import minilm_dir
    from test_component_configs import CONFIGS

    kb, gold = aida
    DocBin(docs=gold, store_user_data=True).to_disk(tmp_path / "train.spacy")
    config = load_config(CONFIGS / "gliner_linker_listener_train.cfg", overrides={
        "paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "train.spacy"),
        "paths.model": str(checkpoints(FAMILY)), "paths.encoder": minilm_dir(), "paths.kb": str(kb)})
    config.to_disk(tmp_path / "config.cfg")
    train(tmp_path / "config.cfg", tmp_path / "out", overrides={"training.max_steps": 2, "training.eval_frequency": 1000})
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.pipe_names == ["transformer", "gliner_linker"]
    assert nlp.get_pipe("transformer").listening_components == ["gliner_linker"]
    linker = nlp.get_pipe("gliner_linker")
    assert linker.cfg["feature_weights"] and linker.encoder.model.text_encoder.transformer is None
    doc = nlp(mentions(nlp, gold[:1])[0])
    assert doc.ents and all(e.kb_id_ and e._.gliner_candidates for e in doc.ents)


def test_a_checkpoint_max_pooling_after_its_projection_cannot_listen(checkpoints, aida, tmp_path):
    """Max pooling does not commute with the projection from the tower's 384 to the checkpoint's
    256 dimensions: a listener pooling the transformer's output cannot give those word vectors."""
    import json

    source = checkpoints(FAMILY)
    pooled_by_max = tmp_path / "max_pooling"
    pooled_by_max.mkdir()
    for path in source.iterdir():  # the same files, but the config
        if path.name != "gliner_config.json":
            (pooled_by_max / path.name).symlink_to(path)
    config = json.loads((source / "gliner_config.json").read_text())
    (pooled_by_max / "gliner_config.json").write_text(json.dumps({**config, "subtoken_pooling": "max"}))
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=r"gliner_linker: .* max-pools subwords after projecting them from 384 to 256"):
        listening_linker(nlp, pooled_by_max, aida[0], pooling="reduce_max.v1")
    assert nlp.pipe_names == []
