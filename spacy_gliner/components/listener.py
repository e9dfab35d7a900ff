"""A bi-encoder's text tower shared with the pipeline: ``gliner_ner`` and ``gliner_linker``
listening to a spaCy ``transformer``.

spaCy's own components share a transformer through ``spacy-transformers.TransformerListener.v1``
in their config (the ``tok2vec`` block of ``ner`` or ``tagger``). ``gliner_ner`` and
``gliner_linker`` take the same block as their ``text_encoder`` setting; the ``transformer``
component finds the listener in the component's ``model`` (spaCy links listeners by walking each
component's thinc model), hands it each batch's wordpiece outputs, and the listener's pooling
turns them into one vector per token through the transformer's alignment. Those word vectors
replace the checkpoint's own text tower (the NER head's words, the linker's mention words);
gradients go back through the listener into the shared transformer.

Nothing here imports spacy-transformers: the listener node is recognised by what it has
(``upstream_name``), so the extra stays optional.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d, Ragged

# The checkpoint's subtoken pooling -> the thinc reduction that gives the same word vectors.
POOLING_LAYERS = {"first": "reduce_first", "last": "reduce_last", "mean": "reduce_mean", "max": "reduce_max"}
# What the block written by this package pools with, per subtoken pooling (see first_subword).
POOLING_ARCHITECTURES = {"first": "spacy_gliner.first_subword.v1", "last": "reduce_last.v1", "mean": "reduce_mean.v1",
                         "max": "reduce_max.v1"}
TRF_DATA = "trf_data"  # the Doc extension spacy-transformers writes


@registry.layers("spacy_gliner.first_subword.v1")
def first_subword() -> Model[Ragged, Floats2d]:
    """thinc's ``reduce_first`` that also takes tokens without wordpieces (whitespace tokens, which
    the transformer's alignment leaves empty and ``reduce_first`` refuses): they get zeros, and
    gliner_ner never reads them (its words are the non-whitespace tokens). Named like thinc's
    layer: it pools the same way."""
    return Model(POOLING_LAYERS["first"], _first_subword_forward)


def _first_subword_forward(model: Model, ragged: Ragged, is_train: bool):
    xp = model.ops.xp
    lengths = xp.asarray(ragged.lengths)
    starts = xp.cumsum(lengths) - lengths
    present = xp.nonzero(lengths > 0)[0]
    data = ragged.dataXd
    pooled = model.ops.alloc2f(len(lengths), data.shape[1])
    pooled[present] = data[starts[present]]

    def backprop(d_pooled):
        d_data = model.ops.alloc2f(*data.shape)
        d_data[starts[present]] = d_pooled[present]  # one distinct row per non-empty token
        return Ragged(d_data, ragged.lengths)

    return pooled, backprop


# The name spacy-transformers gives its listener layer (spaCy's Tok2VecListener, which listens to a
# tok2vec, has the same handshake but no wordpieces to pool).
LISTENER_LAYER = "transformer-listener"


def listener_node(text_encoder):
    """The ``TransformerListener`` inside a ``text_encoder`` model, or None."""
    for node in text_encoder.walk():
        if node.name == LISTENER_LAYER and hasattr(node, "upstream_name"):
            return node
    return None


def check_text_encoder(text_encoder, owner: str):
    """``text_encoder`` must be a thinc model that listens to a transformer (TransformerListener.v1)."""
    if not isinstance(text_encoder, Model) or listener_node(text_encoder) is None:
        raise ValueError(
            f"{owner}: 'text_encoder' must listen to an upstream transformer component: "
            '{"@architectures": "spacy-transformers.TransformerListener.v1", "upstream": "transformer", '
            '"pooling": {"@layers": "spacy_gliner.first_subword.v1"}, "grad_factor": 1.0}; '
            f"got {type(text_encoder).__name__}. Leave it unset to use the checkpoint's own text tower."
        )
    return text_encoder


def check_pooling(text_encoder, subtoken_pooling: str, owner: str) -> None:
    """The listener pools wordpieces into words as the checkpoint was trained to (GLiNER: the first subword)."""
    wanted = POOLING_LAYERS[subtoken_pooling]
    found = [node.name for node in text_encoder.walk() if node.name in POOLING_LAYERS.values()]
    if found != [wanted]:
        raise ValueError(
            f"{owner}: the checkpoint pools subwords into words by '{subtoken_pooling}', but its text_encoder "
            f"pools by {', '.join(found) or 'nothing known'}; set the listener's pooling to "
            f'{{"@layers": "{POOLING_ARCHITECTURES[subtoken_pooling]}"}} so the word vectors are the ones its heads '
            "were trained on."
        )


def check_listening_checkpoint(text_encoder, config, owner: str, source: Optional[str]) -> None:
    """A checkpoint whose text tower a listener can replace: a bi-encoder, pooling subwords as the
    listener does, and (max pooling) without a projection between the tower and the pooling."""
    where = source or "this model"
    if not config.bi_encoder:
        raise ValueError(
            f"{owner}: 'text_encoder' (a shared transformer) replaces the text tower of bi-encoder "
            f"checkpoints only; {where} reads labels and text in one encoder pass. "
            "Remove 'text_encoder', or use a bi-encoder checkpoint."
        )
    check_pooling(text_encoder, config.subtoken_pooling, owner)
    tower_width = (config.encoder_config or {}).get("hidden_size", config.hidden_size)
    if config.subtoken_pooling == "max" and tower_width != config.hidden_size:
        # pooled outside, projected here: max pooling does not commute with the projection
        raise ValueError(
            f"{owner}: {where} max-pools subwords after projecting them from {tower_width} to "
            f"{config.hidden_size} dimensions, which a listener pooling the transformer's output cannot "
            "reproduce. Remove 'text_encoder' to run the checkpoint's own text tower."
        )


def check_upstream(nlp, owner: str, text_encoder, width: int) -> None:
    """At ``initialize``: a transformer component earlier in ``nlp`` feeds this listener, as wide
    as the checkpoint's text tower."""
    node = listener_node(text_encoder)
    feeding = [name for name, pipe in nlp.pipeline
               if node in getattr(pipe, "listener_map", {}).get(owner, [])]
    if not feeding:
        raise ValueError(
            f"{owner}: its text_encoder listens to an upstream transformer ({node.upstream_name!r}), but no "
            f"transformer component in the pipeline ({', '.join(nlp.pipe_names)}) feeds it. Add one before "
            f"{owner!r} (nlp.add_pipe('transformer', before={owner!r}, config=...)), with the name the "
            "listener's 'upstream' gives, or remove 'text_encoder' to use the checkpoint's own text tower."
        )
    check_width(node, owner, width, feeding[0])


def check_width(node, owner: str, width: int, upstream: Optional[str] = None) -> None:
    found = node.get_dim("nO") if node.has_dim("nO") else None
    if found is not None and found != width:
        source = f"transformer {upstream!r}" if upstream else "the upstream transformer"
        raise ValueError(
            f"{owner}: {source} gives {found}-wide vectors, but the checkpoint's text tower is {width} wide. "
            "The listener must share the transformer the checkpoint was trained with: build the pipeline "
            "with `python -m spacy_gliner to-listener CHECKPOINT OUT`, or use a transformer of hidden size "
            f"{width}."
        )


def check_docs_listened(docs: Sequence[Doc], owner: str) -> None:
    """Every doc carries the upstream transformer's output (else the listener would read zeros)."""
    missing = [i for i, doc in enumerate(docs) if len(doc) and (not Doc.has_extension(TRF_DATA) or doc._.get(TRF_DATA) is None)]
    if missing:
        raise ValueError(
            f"{owner}: {len(missing)} of {len(docs)} docs have no transformer output (doc._.{TRF_DATA}) for its "
            "text_encoder listener to read. Run the pipeline with its 'transformer' component before "
            f"{owner!r} (nlp(text) or nlp.pipe does), not the component alone on new docs."
        )


def word_vectors(arrays, token_ids: Sequence[Sequence[int]], device, requires_grad: bool = False):
    """Torch (words, width) vectors per doc from the listener's per-token arrays, whitespace tokens left out."""
    import torch
    from thinc.api import xp2torch

    out = []
    for array, ids in zip(arrays, token_ids):
        vectors = xp2torch(array).to(device=device, dtype=torch.float32)[torch.as_tensor(list(ids), dtype=torch.long, device=device)]
        out.append(vectors.detach().requires_grad_(requires_grad) if requires_grad else vectors)
    return out


def listened_vectors(text_encoder, docs: Sequence[Doc], token_ids, owner: str, width: int, device):
    """Inference: the word vectors of ``docs`` from the shared transformer's output on them
    (no gradient), after checking that output is there and as wide as the text tower."""
    check_docs_listened(docs, owner)
    check_width(listener_node(text_encoder), owner, width)
    return word_vectors(text_encoder.predict(docs), token_ids, device)


def listen(text_encoder, docs: Sequence[Doc], owner: str, for_update: bool):
    """(per-token arrays, backprop or None) of the listener on a training batch: an update takes the
    outputs the transformer sent this batch (and owes it a gradient), a loss reads ``doc._.trf_data``."""
    if for_update:
        return text_encoder.begin_update(list(docs))
    check_docs_listened(docs, owner)
    return text_encoder.predict(list(docs)), None


def send_word_gradients(arrays, token_ids: Sequence[Sequence[int]], word_gradients, backprop) -> None:
    """Hand the transformer its gradient per token: ``word_gradients`` yields (doc index, first
    word, (n, width) torch gradient of words first..first+n); tokens without one get zeros.

    Called exactly once per update, even with nothing to send: as the last listener, this call is
    what applies the other listeners' gradients."""
    from thinc.api import get_array_module, torch2xp

    gradients = [get_array_module(a).zeros(a.shape, dtype=a.dtype) for a in arrays]
    for doc_index, first, grad in word_gradients:
        rows = token_ids[doc_index][first : first + grad.size(0)]
        gradients[doc_index][rows] += torch2xp(grad.detach().float())
    backprop(gradients)


@dataclass
class ListenedDocs:
    """A training batch's word vectors from the shared transformer, one tensor per doc (a leaf
    requiring grad for an update). Once the loss has been backpropagated into them (directly, as
    ``gliner_linker`` reads whole docs, or through the window rows ``gliner_ner`` copies out of
    them), :meth:`send_gradient` hands their gradients per token back to the transformer."""

    vectors: list  # per doc: (words, width) tensor
    token_ids: List[List[int]]  # per doc: token index of each word
    arrays: list  # the listener's per-token outputs, per doc
    backprop: Optional[Callable]

    @classmethod
    def of(cls, text_encoder, docs: Sequence[Doc], token_ids, owner: str, device, for_update: bool) -> "ListenedDocs":
        arrays, backprop = listen(text_encoder, docs, owner, for_update)
        return cls(word_vectors(arrays, token_ids, device, requires_grad=for_update), list(token_ids), arrays, backprop)

    def send_gradient(self) -> None:
        """Exactly once per update, gradients or not (see :func:`send_word_gradients`)."""
        if self.backprop is None:
            return
        self.backprop, backprop = None, self.backprop
        found = [(doc_index, 0, vectors.grad) for doc_index, vectors in enumerate(self.vectors) if vectors.grad is not None]
        send_word_gradients(self.arrays, self.token_ids, found, backprop)


@dataclass
class ListenedBatch:
    """A ``gliner_ner`` training batch whose ``word_vectors`` rows were copied from ``listened``."""

    batch: object  # training.batches.TrainingBatch, word_vectors set
    listened: ListenedDocs

    def send_gradient(self) -> None:
        self.listened.send_gradient()


def listener_config(upstream: str = "transformer", pooling: str = "first", grad_factor: float = 1.0) -> dict:
    """The ``text_encoder`` block for a checkpoint pooling subwords by ``pooling``."""
    return {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "upstream": upstream,
        "grad_factor": grad_factor,
        "pooling": {"@layers": POOLING_ARCHITECTURES[pooling]},
    }


def build_listener_pipeline(checkpoint: str, labels=None, lang: str = "en", window: int = 128, stride: int = 96,
                            ner_settings: Optional[dict] = None, kb: Optional[str] = None,
                            linker_settings: Optional[dict] = None):
    """A pipeline [transformer, gliner_ner], [transformer, gliner_linker] or [transformer,
    gliner_ner, gliner_linker] from a bi-encoder checkpoint: the ``transformer`` component holds
    the checkpoint's text tower (weights and tokenizer, through spacy-transformers' Hugging Face
    shim); ``gliner_ner`` (when ``labels`` are given) and ``gliner_linker`` (when a knowledge base
    ``kb`` is given; it links the entities ``gliner_ner`` found, or those already on the doc) hold
    the label tower and heads, both listening to it: one text-tower pass for the whole pipeline.

    The transformer reads documents in spans of ``window`` tokens, ``stride`` apart (spaCy's
    strided spans): a document within one span gets the word vectors the stand-alone components
    compute; longer ones are read in overlapping spans instead of GLiNER's word windows.
    Returns the initialized ``Language`` (the linker's KB embedded); save it with ``nlp.to_disk``,
    which copies the KB into the pipeline unless ``linker_settings`` say ``copy_kb: false``.
    """
    import tempfile
    from pathlib import Path

    import spacy

    from ..modeling.checkpoint import load_checkpoint

    if not labels and kb is None:
        raise ValueError(
            "build_listener_pipeline: give entity labels (a listening gliner_ner), a knowledge base "
            "(a listening gliner_linker), or both."
        )
    loaded = load_checkpoint(checkpoint)
    if not loaded.config.bi_encoder:
        raise ValueError(
            f"{checkpoint}: not a bi-encoder checkpoint (its labels and text are read in one encoder pass), so "
            "its text tower cannot be shared with other components."
        )
    text_encoder = listener_config(pooling=loaded.config.subtoken_pooling)
    nlp = spacy.blank(lang)
    with tempfile.TemporaryDirectory() as tmp:
        tower = Path(tmp) / "text_tower"
        loaded.model.text_encoder.transformer.save_pretrained(str(tower))
        loaded.tokenizer.save_pretrained(str(tower))
        nlp.add_pipe("transformer", config={"model": {
            "@architectures": "spacy-transformers.TransformerModel.v3",
            "name": str(tower),
            "tokenizer_config": {"use_fast": True},
            "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": window, "stride": stride},
        }})
        if labels:
            settings = dict(ner_settings or {})
            settings.update(model=str(checkpoint), labels=labels, text_encoder=text_encoder)
            nlp.add_pipe("gliner_ner", config=settings)
        if kb is not None:
            settings = dict(linker_settings or {})
            settings.update(model=str(checkpoint), kb=str(kb), text_encoder=text_encoder)
            nlp.add_pipe("gliner_linker", config=settings)
        nlp.initialize()  # the transformer reads the tower while the directory still exists
    return nlp
