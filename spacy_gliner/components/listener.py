"""A bi-encoder's text tower shared with the pipeline: ``gliner_ner`` listening to a spaCy ``transformer``.

spaCy's own components share a transformer through ``spacy-transformers.TransformerListener.v1``
in their config (the ``tok2vec`` block of ``ner`` or ``tagger``). ``gliner_ner`` takes the same
block as its ``text_encoder`` setting; the ``transformer`` component finds the listener in
``gliner_ner.model`` (spaCy links listeners by walking each component's thinc model), hands it
each batch's wordpiece outputs, and the listener's pooling turns them into one vector per token
through the transformer's alignment. Those word vectors replace the checkpoint's own text tower;
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
    from thinc.api import Model

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


@dataclass
class ListenedBatch:
    """A training batch whose word vectors came from the shared transformer.

    ``batch.word_vectors`` is a leaf tensor; once the loss has been backpropagated into it,
    :meth:`send_gradient` hands the gradient per token back to the transformer (which steps its
    own optimizer when this is the last listener).
    """

    batch: object  # training.batches.TrainingBatch, word_vectors set
    origins: List[tuple]  # per batch row: (doc index, first word)
    token_ids: List[List[int]]  # per doc: token index of each word
    arrays: list  # the listener's per-token outputs, per doc
    backprop: Optional[Callable]

    def send_gradient(self) -> None:
        if self.backprop is None:
            return
        from thinc.api import get_array_module, torch2xp

        gradients = [get_array_module(a).zeros(a.shape, dtype=a.dtype) for a in self.arrays]
        grad = self.batch.word_vectors.grad
        if grad is not None:
            lengths = self.batch.encoded.num_words.tolist()
            for row, ((doc_index, first), length) in enumerate(zip(self.origins, lengths)):
                rows = self.token_ids[doc_index][first : first + length]
                gradients[doc_index][rows] += torch2xp(grad[row, :length].detach().to(dtype=self.batch.word_vectors.dtype))
        self.backprop, backprop = None, self.backprop
        backprop(gradients)


def send_zero_gradient(arrays, backprop) -> None:
    """A batch with nothing to learn still answers the transformer: as the last listener, this
    call is what applies the other listeners' gradients."""
    from thinc.api import get_array_module

    backprop([get_array_module(a).zeros(a.shape, dtype=a.dtype) for a in arrays])


def listener_config(upstream: str = "transformer", pooling: str = "first", grad_factor: float = 1.0) -> dict:
    """The ``text_encoder`` block for a checkpoint pooling subwords by ``pooling``."""
    return {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "upstream": upstream,
        "grad_factor": grad_factor,
        "pooling": {"@layers": POOLING_ARCHITECTURES[pooling]},
    }


def build_listener_pipeline(checkpoint: str, labels, lang: str = "en", window: int = 128, stride: int = 96,
                            ner_settings: Optional[dict] = None):
    """A pipeline [transformer, gliner_ner] from a bi-encoder checkpoint: the ``transformer``
    component holds the checkpoint's text tower (weights and tokenizer, through spacy-transformers'
    Hugging Face shim), ``gliner_ner`` the label tower and heads, listening to it.

    The transformer reads documents in spans of ``window`` tokens, ``stride`` apart (spaCy's
    strided spans): a document within one span gets the word vectors the stand-alone component
    computes; longer ones are read in overlapping spans instead of GLiNER's word windows.
    Returns the initialized ``Language``; save it with ``nlp.to_disk``.
    """
    import tempfile
    from pathlib import Path

    import spacy

    from ..modeling.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    if not loaded.config.bi_encoder:
        raise ValueError(
            f"{checkpoint}: not a bi-encoder checkpoint (its labels and text are read in one encoder pass), so "
            "its text tower cannot be shared with other components."
        )
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
        settings = dict(ner_settings or {})
        settings.update(model=str(checkpoint), labels=labels, text_encoder=listener_config(pooling=loaded.config.subtoken_pooling))
        nlp.add_pipe("gliner_ner", config=settings)
        nlp.initialize()  # the transformer reads the tower while the directory still exists
    return nlp
