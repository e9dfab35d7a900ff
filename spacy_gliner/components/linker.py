"""The ``gliner_linker`` component: zero-shot entity linking with a bi-encoder GLiNER.

It links the entities already on the doc (``doc.ents``, and ``doc.spans[spans_key]`` when set):

* candidates come from a registered generator (default: exact alias + fuzzy trigram + dense
  inner product, fused by ``MergedCandidates``) over the knowledge base: the ``kb`` path, or
  one given by ``initialize(kb_loader=...)`` / ``set_kb`` (``spacy_gliner.components.linker_kb``);
* every candidate is scored ``sigmoid(entity . mention / temperature + w . features + bias)``:
  the entity vector is the label tower's vector of ``entity_text(entity)`` (computed once,
  stored float16 beside the KB), the mention vector the span head's vector of the mention (see
  ``spacy_gliner.inference.linking``); the features (``features`` setting: alias prior and string
  similarity, ``spacy_gliner.kb.features``) are defined for every candidate whichever generator
  found it, so candidates merged from several generators are ranked on one scale. Before
  training ``w = 0``, ``bias = 0``, ``temperature = 1``;
* the best candidate becomes ``span.kb_id_`` when its score reaches ``threshold``; otherwise,
  and for mentions without candidates, ``kb_id_`` is ``"NIL"`` (spaCy's ``EntityLinker``
  convention, and a negative label for the scorer);
* the ``top_k`` ranked candidates with their scores are on ``span._.gliner_candidates``
  (``[(entity id, score), ...]``, best first; ``[]`` when there were none, ``None`` for a span
  this component never linked). The data lives in ``doc.user_data`` under
  ``("spacy_gliner.candidates", start, end)``, so it survives ``doc.to_bytes``.

Training (``spacy train`` on gold ``kb_id``s of ``Example.reference`` ents; ``update``,
``get_loss``; batches and loss in ``spacy_gliner.components.linker_training``): a contrastive loss over each gold mention's candidates (see
``contrastive_linking_loss``); the text tower, span head, label (entity) tower and the score
mixing weights all learn, encoders and heads at separate rates (``training`` setting). Every
update changes the entity encoder, so the entity embedding store is dropped and recomputed on
next use (its encoder id, a digest of the label tower's weights, no longer matches: a stale
store is never used); ``to_disk`` after training therefore re-embeds the KB.

A shared text tower (``text_encoder``: a ``spacy-transformers.TransformerListener.v1`` block,
as ``gliner_ner`` takes it; ``spacy_gliner.components.listener``): the mention words come from an
upstream ``transformer`` component through its alignment instead of the checkpoint's own text
tower, and training sends the mention loss's gradient back into that transformer.

Torch, transformers and the KB are loaded lazily or at ``add_pipe`` as noted in the code.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import srsly
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from spacy import util
from spacy.util import registry
from thinc.api import Model

from ..kb import candidates as _candidates  # noqa: F401  (registers the @misc generator builders)
from ..kb.base import NIL
from ..kb.features import FEATURES, check_features
from ..training.settings import check_training_settings
from .annotations import doc_words, optional_int, warn_counts, word_index, word_span
from .base import CHECKPOINT_DIR, SETTINGS_FILE, GlinerPipe
from .linker_kb import KB_SETTING, building_from_config, default_store_dir, missing_kb_error, open_linker_kb
from .linker_training import GoldMention, LinkerLearner
from .listener import ListenedDocs, check_listening_checkpoint, check_text_encoder, check_upstream, listened_vectors
from .trainable import TrainingSteps

NEGATIVE_LABELS = (NIL, "")
# user_data key of a mention's ranked candidates: (CANDIDATES_KEY, start_char, end_char).
# Character offsets, not token offsets: merge_entities and other retokenizers renumber tokens
# (and leave user_data alone) but never move characters. The name changed with the offsets
# ("spacy_gliner.candidates" held token offsets), so older docs are never misread.
CANDIDATES_KEY = "spacy_gliner.candidates.chars"
EXTENSION = "gliner_candidates"
KB_DIR = "kb"
EMBEDDINGS_DIR = "embeddings"
STORE_FILES = ("embeddings.npy", "row_digests.npy", "embeddings.json")

DEFAULT_CANDIDATES: Dict[str, Any] = {
    "@misc": "spacy_gliner.MergedCandidates.v1",
    "k": 30,
    "generators": {
        "exact": {"@misc": "spacy_gliner.ExactAliasCandidates.v1", "k": 10},
        "fuzzy": {"@misc": "spacy_gliner.FuzzyCandidates.v1", "k": 20, "min_score": 0.3},
        "dense": {"@misc": "spacy_gliner.DenseCandidates.v1", "k": 10},
    },
}

# Settings of training; every key is optional in a config.
DEFAULT_LINKER_TRAINING: Dict[str, Any] = {
    "encoder_lr": 1e-5,
    "head_lr": 1e-3,
    "feature_lr": 1e-2,  # the score mixing weights and bias (a handful of scalars)
    "weight_decay": 0.01,
    "warmup_steps": 0,
    "total_steps": None,
    "grad_clip": 10.0,
    "temperature": 0.1,
    "negatives": 7,  # hardest exact-alias / fuzzy candidates per mention
    "in_batch_negatives": True,
    "binary_weight": 1.0,
    "max_mentions": 32,  # per update; a batch with more is sampled
    "nil_mentions": True,  # gold "NIL" mentions: every candidate is a negative
    "seed": 0,
}

DEFAULT_LINKER_CONFIG: Dict[str, Any] = {
    "kb": None,
    # a spacy-transformers.TransformerListener.v1 block: the shared `transformer` component then
    # runs the text tower (components/listener.py); None runs the checkpoint's own
    "text_encoder": None,
    "candidates": DEFAULT_CANDIDATES,
    "features": list(FEATURES),
    "training": {},
    "threshold": 0.5,
    "top_k": 5,
    "spans_key": None,
    "batch_size": 8,
    "copy_kb": True,
    "scorer": {"@scorers": "spacy_gliner.linker_scorer.v1"},
}


def _get_candidates(span: Span) -> Optional[List[Tuple[str, float]]]:
    stored = span.doc.user_data.get((CANDIDATES_KEY, span.start_char, span.end_char))
    return None if stored is None else [(str(eid), float(score)) for eid, score in stored]


if not Span.has_extension(EXTENSION):
    Span.set_extension(EXTENSION, getter=_get_candidates)


@Language.factory(
    "gliner_linker",
    assigns=["token.ent_kb_id", f"span._.{EXTENSION}"],
    requires=["doc.ents"],
    default_config=DEFAULT_LINKER_CONFIG,
    default_score_weights={"nel_micro_f": 1.0, "nel_micro_p": 0.0, "nel_micro_r": 0.0},
)
def make_gliner_linker(
    nlp: Language,
    name: str,
    model: str,
    kb: Optional[str],
    text_encoder: Optional[Model],
    candidates: Callable,
    threshold: float,
    top_k: int,
    spans_key: Optional[str],
    batch_size: int,
    copy_kb: bool,
    scorer: Optional[Callable],
    features: List[str],
    training: Dict[str, Any],
) -> "GlinerLinker":
    return GlinerLinker(
        nlp.vocab, name=name, model=model, kb=kb, text_encoder=text_encoder, candidates=candidates, threshold=threshold,
        top_k=top_k, spans_key=spans_key, batch_size=batch_size, copy_kb=copy_kb, scorer=scorer, features=features,
        training=training,
    )


def score_gliner_links(examples: Iterable[Example], negative_labels: Iterable[str] = NEGATIVE_LABELS, **kwargs) -> Dict[str, Any]:
    """``nel_micro_p/r/f`` and ``nel_f_per_type`` as spaCy's ``Scorer.score_links``: only
    predicted entities with the exact offsets of a gold entity count; NIL is a negative label."""
    kwargs.pop("spans_key", None)
    return Scorer.score_links(list(examples), negative_labels=list(negative_labels), **kwargs)


@registry.scorers("spacy_gliner.linker_scorer.v1")
def make_linker_scorer() -> Callable:
    return score_gliner_links


def default_candidates() -> Callable:
    """The builder ``DEFAULT_CANDIDATES`` describes, for a component made without a config."""
    from ..kb.candidates import (
        make_dense_candidates,
        make_exact_alias_candidates,
        make_fuzzy_candidates,
        make_merged_candidates,
    )

    return make_merged_candidates(
        {"exact": make_exact_alias_candidates(k=10), "fuzzy": make_fuzzy_candidates(k=20, min_score=0.3),
         "dense": make_dense_candidates(k=10)},
        k=30,
    )


class GlinerLinker(TrainingSteps, GlinerPipe):
    """Links ``doc.ents`` (and optionally a span group) to a knowledge base, zero-shot."""

    def __init__(
        self,
        vocab,
        name: str = "gliner_linker",
        *,
        model: str,
        kb: Optional[str] = None,
        text_encoder: Optional[Model] = None,
        candidates: Optional[Callable] = None,
        threshold: float = 0.5,
        top_k: int = 5,
        spans_key: Optional[str] = None,
        batch_size: int = 8,
        copy_kb: bool = True,
        scorer: Optional[Callable] = score_gliner_links,
        features: Iterable[str] = FEATURES,
        training: Optional[Dict[str, Any]] = None,
    ):
        if not isinstance(model, (str, Path)) or not str(model).strip():
            raise ValueError(f"{name}: 'model' must be a bi-encoder GLiNER checkpoint directory or a hub id.")
        if kb is not None and (not isinstance(kb, (str, Path)) or not str(kb).strip()):
            raise ValueError(f"{name}: 'kb' must be the path of a KB directory, a JSONL file or an SQLite file, or null "
                             "for a KB given later by initialize(kb_loader=...) or set_kb.")
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"{name}: 'threshold' must be a number in [0, 1), got {threshold!r}.")
        if spans_key is not None and (not isinstance(spans_key, str) or not spans_key):
            raise ValueError(f"{name}: 'spans_key' must be a non-empty string or null.")
        if candidates is not None and not callable(candidates):
            raise ValueError(f"{name}: 'candidates' must be a registered generator, e.g. @misc = \"spacy_gliner.MergedCandidates.v1\".")
        self.vocab = vocab
        self.name = name
        self.source = str(model)
        self.kb_source: Optional[str] = str(kb) if kb is not None else None
        self.cfg: Dict[str, Any] = {
            "threshold": float(threshold),
            "top_k": optional_int(top_k, f"{name} 'top_k'", 1),
            "spans_key": spans_key,
            "batch_size": optional_int(batch_size, f"{name} 'batch_size'", 1),
            "copy_kb": bool(copy_kb),
            "features": check_features(features, f"{name} 'features'"),
            # Learned by training (0 / 0 / 1: the bi-encoder score alone).
            "feature_weights": {},
            "bias": 0.0,
            "temperature": 1.0,
        }
        self.training = check_training_settings(name, dict(training or {}), DEFAULT_LINKER_TRAINING)
        for key in ("negatives", "max_mentions"):
            if not isinstance(self.training[key], int) or self.training[key] < (0 if key == "negatives" else 1):
                raise ValueError(f"{name} 'training.{key}' must be an integer >= {0 if key == 'negatives' else 1}, "
                                 f"got {self.training[key]!r}.")
        if not isinstance(self.training["temperature"], (int, float)) or self.training["temperature"] <= 0:
            raise ValueError(f"{name} 'training.temperature' must be a number > 0, got {self.training['temperature']!r}.")
        if self.cfg["top_k"] is None or self.cfg["batch_size"] is None:
            raise ValueError(f"{name}: 'top_k' and 'batch_size' must be integers >= 1.")
        self.candidates_builder = candidates
        self.scorer = scorer
        # The torch network lives in the encoder and trains with its own optimizer. thinc's slot
        # holds only a text_encoder listener, where spaCy's transformer component finds it.
        self.model = check_text_encoder(text_encoder, name) if text_encoder is not None else None
        self._encoder = None
        self._kb = None
        self._store = None
        self._store_dir: Optional[Path] = None
        self._generator = None
        self._features = None
        self._learner: Optional[LinkerLearner] = None
        self._validate_local_checkpoint()
        # The KB is read now so a broken, empty or missing one fails at add_pipe. One exception:
        # Language.from_config (spacy.load, spacy train) builds the component from its config
        # before from_disk restores the KB saved with the pipeline, so the config's path may be
        # gone by then without anything being wrong. That case is checked by from_disk (saved
        # pipelines), initialize (training) and the first document (anything else).
        if self.kb_source is None:
            pass  # given by initialize(kb_loader=...) or set_kb
        elif Path(self.kb_source).expanduser().exists():
            self._kb = open_linker_kb(self.name, self.kb_source)
            self._store_dir = default_store_dir(self.kb_source)
        elif not building_from_config():
            raise missing_kb_error(self.name, self.kb_source)

    def _validate_local_checkpoint(self) -> None:
        directory = Path(self.source).expanduser()
        if not directory.is_dir():
            from ..modeling.checkpoint import check_cached_hub_checkpoint

            check_cached_hub_checkpoint(self.source)
            return
        from ..inference.linking import check_linker_checkpoint
        from ..modeling.checkpoint import check_checkpoint_files

        try:
            config = check_checkpoint_files(directory)
            check_linker_checkpoint(config, f"{self.name}: model {self.source!r}")
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}" if not str(err).startswith(self.name) else str(err)) from None
        if self.listens:
            check_listening_checkpoint(self.model, config, self.name, self.source)

    # -- lazily loaded parts -------------------------------------------------------------------
    @property
    def kb(self):
        if self._kb is None:
            if self.kb_source is None:
                raise ValueError(
                    f"{self.name}: no knowledge base. Give its path as the 'kb' setting, or a kb_loader to "
                    "initialize (e.g. [initialize.components.<name>.kb_loader] @misc = \"spacy_gliner.KBFromPath.v1\") or set_kb."
                )
            self._kb = open_linker_kb(self.name, self.kb_source)
            self._store_dir = default_store_dir(self.kb_source)
        return self._kb

    @property
    def encoder(self):
        if self._encoder is None:
            self._load(self.source)
        return self._encoder

    def _load(self, source: Union[str, Path]) -> None:
        from ..inference.linking import MentionEncoder
        from .device import load_on_model_device

        checkpoint = load_on_model_device(source, text_tower=not self.listens)
        encoder = MentionEncoder(checkpoint, batch_size=self.cfg["batch_size"])
        if self.listens:  # a hub id was not checked at add_pipe
            check_listening_checkpoint(self.model, encoder.config, self.name, self.source)
        self._encoder = encoder

    @property
    def store(self):
        """The entity embedding store, computed (with a progress bar) or updated when missing or
        stale. Stale includes "made by other weights": training changes the entity encoder, and
        its id (a digest of the label tower) then differs from the one the store was made with."""
        if self._store is None or self._store.encoder_id != self.encoder.encoder_id:
            self.prepare_embeddings(progress=True)
        return self._store

    def prepare_embeddings(self, progress: bool = True) -> int:
        """Make sure every KB entity has a stored vector; returns the number of KB rows."""
        from ..kb.embeddings import ensure_embeddings

        kb, encoder = self.kb, self.encoder
        if self._store_dir is None:  # restored from bytes: no directory beside the KB
            import tempfile

            self._store_dir = Path(tempfile.mkdtemp(prefix="gliner_linker_embeddings_"))
        self._store = ensure_embeddings(self._store_dir, kb, encoder.encode_entities, encoder.encoder_id, progress=progress)
        self._generator = None
        return len(self._store)

    def use_kb(self, kb: Union[str, Path], copy_kb: Optional[bool] = None) -> None:
        """Link against another knowledge base from now on (e.g. train on one KB, evaluate or
        deploy on another); its embeddings are computed beside it on next use."""
        self._kb = open_linker_kb(self.name, kb)
        self.kb_source = str(kb)
        self._store_dir = default_store_dir(kb)
        self._kb_changed()
        if copy_kb is not None:
            self.cfg["copy_kb"] = bool(copy_kb)

    def set_kb(self, kb_loader: Callable) -> None:
        """Link against the KB ``kb_loader(vocab)`` returns, as spaCy's ``EntityLinker.set_kb``.
        A loader with a ``path`` (``spacy_gliner.KBFromPath.v1``) becomes the 'kb' setting; the
        KB of any other loader has no path to keep, so it is saved with the pipeline (``copy_kb``)."""
        from ..kb.base import ensure_not_empty

        if not callable(kb_loader):
            raise ValueError(f"{self.name}: kb_loader must be a callable taking the Vocab and returning a knowledge base, "
                             f"e.g. spacy_gliner.KBFromPath.v1; got {type(kb_loader).__name__}.")
        kb = kb_loader(self.vocab)
        ensure_not_empty(kb, f"the '{self.name}' component (kb_loader)")
        path = getattr(kb_loader, "path", None)
        self._kb = kb
        self.kb_source = str(path) if path is not None else None
        self._store_dir = default_store_dir(path) if path is not None else None
        if path is None:
            self.cfg["copy_kb"] = True
        self._kb_changed()

    def _kb_changed(self) -> None:
        self._store = None
        self._generator = None
        self._features = None

    def set_candidates(self, candidates: Optional[Callable]) -> None:
        """Generate candidates with another registered builder (None: the default merged one)
        from the next document on, e.g. to compare generators on one trained pipeline."""
        if candidates is not None and not callable(candidates):
            raise ValueError(f"{self.name}: 'candidates' must be a registered generator builder.")
        self.candidates_builder = candidates
        self._generator = None

    def set_features(self, features: Iterable[str]) -> None:
        """Mix these string features into the score from the next document on (``[]``: the
        bi-encoder score alone); a feature without a learned weight weighs 0."""
        self.cfg["features"] = check_features(features, f"{self.name} 'features'")
        self._features = None

    @property
    def generator(self):
        if self._generator is None:
            builder = self.candidates_builder
            if builder is None:
                builder = default_candidates()
            self._generator = builder(self.kb, self.store, self.encoder.encode_entities)
        return self._generator

    @property
    def features(self):
        """The (mention, entity) string features mixed into the score (``spacy_gliner.kb.features``)."""
        if self._features is None:
            from ..kb.features import PairFeatures

            self._features = PairFeatures(self.kb, self.cfg["features"])
        return self._features

    def _score_mixing(self) -> Tuple[List[float], float, float]:
        """(feature weights in ``features`` order, bias, temperature) as learned (zeros / 1 untrained)."""
        weights = self.cfg.get("feature_weights") or {}
        return ([float(weights.get(n, 0.0)) for n in self.cfg["features"]], float(self.cfg.get("bias", 0.0)),
                float(self.cfg.get("temperature", 1.0)))

    # -- training ---------------------------------------------------------------------------------

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None,
                   kb_loader: Optional[Callable] = None) -> None:
        """Load the model and check the gold data: every gold id must be in the KB (error naming
        them). Without gold data (no examples, or none with an entity: ``nlp.initialize()``) the
        KB is embedded now (progress bar); with it (training) the
        embeddings wait for the first prediction, since every update changes the entity encoder.
        ``kb_loader`` (``[initialize.components.<name>.kb_loader]``) replaces the KB first, as
        :meth:`set_kb` does."""
        if kb_loader is not None:
            self.set_kb(kb_loader)
        _ = self.kb  # a KB path missing since the config was read fails here, before any data is read
        if self.listens and nlp is not None:
            check_upstream(nlp, self.name, self.model, self.encoder.model.text_width)
        examples = list(get_examples()) if get_examples is not None else []
        # nlp.initialize() without data hands every pipe spaCy's placeholder (a doc without
        # entities): examples with no mention at all are no training data, as no examples are.
        if any(self._mentions(eg.reference) for eg in examples):
            unknown = self._unknown_gold_ids(examples)
            if unknown:
                shown = ", ".join(repr(i) for i in unknown[:5])
                raise ValueError(
                    f"{self.name}: {len(unknown)} gold entity id(s) are not in the knowledge base "
                    f"({len(self.kb)} entities): {shown}{' ...' if len(unknown) > 5 else ''}. Add them to the KB or "
                    f"set their kb_id to {NIL!r}."
                )
            problems: Counter = Counter()
            items = [item for eg in examples for item in self._gold_mentions(eg, problems)]
            if not any(gold is not None for *_, gold in items):
                raise ValueError(
                    f"{self.name}: the training data has no gold links: give the reference entities a kb_id "
                    f"(an id of the KB, or {NIL!r} for a mention without one), e.g. with "
                    "`python -m spacy_gliner.training.convert_linking`."
                )
            warn_counts(self.name, "training data", problems)
            _ = self.encoder
            return
        self.prepare_embeddings(progress=True)
        _ = self.generator

    def _gold_mentions(self, example: Example, problems: Counter) -> List[GoldMention]:
        """(words of the predicted doc, mention word span, mention text, gold id or None for NIL)
        for every reference mention with a kb_id; what cannot be used is counted by reason."""
        words, word_of = word_index(example.predicted)
        kb = self.kb
        out = []
        for ent in self._mentions(example.reference):
            kb_id = ent.kb_id_
            if not kb_id:
                problems["mentions without a kb_id (not linking data)"] += 1
                continue
            if kb_id == NIL and not self.training["nil_mentions"]:
                continue
            if kb_id != NIL and kb_id not in kb:
                problems["mentions whose gold id is not in the knowledge base"] += 1
                continue
            span = example.predicted.char_span(ent.start_char, ent.end_char, alignment_mode="expand")
            mention = word_span(word_of, range(span.start, span.end)) if span is not None else None
            if mention is None:
                problems["mentions not aligned to the predicted tokens"] += 1
                continue
            out.append((words, mention, span.text, None if kb_id == NIL else kb_id))
        return out

    def _get_learner(self) -> LinkerLearner:
        if self._learner is None:
            weights, bias, _ = self._score_mixing()
            self.cfg["temperature"] = float(self.training["temperature"])
            self._learner = LinkerLearner(self.encoder, self.training, weights, bias)
        return self._learner

    def _training_batch(self, examples: Iterable[Example], for_update: bool = True):
        """A batch of the examples' gold mentions; an update samples down to ``max_mentions``,
        a loss (e.g. on a dev set) keeps every mention. Listening, the batch carries each doc's
        word vectors from the shared transformer (``word_vectors``, by the batch's doc key) and,
        for an update, the listener's way back (``listened``)."""
        learner = self._get_learner()
        problems: Counter = Counter()
        examples = list(examples)
        found = [self._gold_mentions(eg, problems) for eg in examples]
        batch = learner.batch([item for items in found for item in items], self.kb, self.features, sample=for_update)
        if not self.listens:
            return batch
        docs = [eg.predicted for eg in examples]
        listened = ListenedDocs.of(self.model, docs, [doc_words(doc)[1] for doc in docs], self.name,
                                   self.encoder.model.device, for_update)
        if batch is None:
            listened.send_gradient()  # nothing to learn, but the transformer waits for its listeners
            return None
        doc_of_key = {id(items[0][0]): index for index, items in enumerate(found) if items}  # items share their doc's words
        batch["word_vectors"] = {key: listened.vectors[doc_of_key[key]] for key in batch["docs"]}
        batch["listened"] = listened
        return batch

    def _train_step(self, batch) -> float:
        loss = self._learner.step(batch, self.cfg["temperature"])
        if batch.get("listened") is not None:
            batch["listened"].send_gradient()
        return loss

    def _batch_loss(self, batch):
        return self._get_learner().loss(batch, self.cfg["temperature"])

    def _after_update(self) -> None:
        """The entity encoder changed, so the embedding store (and the dense generator reading
        it) is dropped and recomputed on next use; the learned mixing goes to cfg."""
        weights, bias = self._learner.learned_mixing()
        self.cfg["feature_weights"] = dict(zip(self.cfg["features"], weights))
        self.cfg["bias"] = bias
        self.encoder.weights_changed()
        self._store = None
        self._generator = None

    def _unknown_gold_ids(self, examples: Iterable[Example]) -> List[str]:
        kb = self.kb
        unknown: Dict[str, None] = {}
        for eg in examples:
            for span in self._mentions(eg.reference):
                if span.kb_id_ not in NEGATIVE_LABELS and span.kb_id_ not in kb:
                    unknown.setdefault(span.kb_id_, None)
        return list(unknown)

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        """spaCy's ``score_links`` convention. Gold ids missing from the KB cannot be predicted:
        they are counted as misses, with a warning saying how many there were."""
        examples = list(examples)
        unknown = self._unknown_gold_ids(examples)
        if unknown:
            warnings.warn(
                f"{self.name}: {len(unknown)} gold entity id(s) are not in the knowledge base and count as "
                f"misses, e.g. {unknown[:3]}",
                UserWarning,
            )
        return self.scorer(examples, **kwargs)

    # -- inference --------------------------------------------------------------------------------
    def _mentions(self, doc: Doc) -> List[Span]:
        spans: Dict[Tuple[int, int], Span] = {(e.start, e.end): e for e in doc.ents}
        key = self.cfg["spans_key"]
        if key is not None and key in doc.spans:
            for span in doc.spans[key]:
                spans.setdefault((span.start, span.end), span)
        return [spans[k] for k in sorted(spans)]

    def predict(self, docs: Iterable[Doc]) -> List[List[Tuple[int, int, List[Tuple[str, float]]]]]:
        """Per doc: (start, end, every candidate with its score, best first) for every mention;
        :meth:`set_annotations` decides (threshold, ``top_k``), as spaCy's spancat does."""
        from ..inference.linking import sigmoid_scores
        import numpy as np

        docs = list(docs)
        _ = self.kb  # a missing KB is reported at the first document, with or without mentions
        mentions = [self._mentions(doc) for doc in docs]
        if not any(mentions):
            return [[] for _ in docs]  # nothing to link: the model is not even loaded
        words_per_doc, word_spans = [], []
        for doc, spans in zip(docs, mentions):
            words, word_of = word_index(doc)
            words_per_doc.append(words)
            word_spans.append([word_span(word_of, range(span.start, span.end)) for span in spans])
        listened = None
        if self.listens:
            encoder = self.encoder
            listened = listened_vectors(self.model, docs, [doc_words(doc)[1] for doc in docs], self.name,
                                        encoder.model.text_width, encoder.model.device)
        vectors = self.encoder.mention_vectors(words_per_doc, [[s for s in found if s is not None] for found in word_spans],
                                               listened)
        generator, kb, store = self.generator, self.kb, self.store
        matrix = store.vectors
        features = self.features
        weights, bias, temperature = self._score_mixing()
        results = []
        for spans, found, doc_vectors in zip(mentions, word_spans, vectors):
            doc_result = []
            row = 0
            for span, mention_words in zip(spans, found):
                ranked: List[Tuple[str, float]] = []
                if mention_words is not None:
                    vector = doc_vectors[row]
                    row += 1
                    ids = list(dict.fromkeys(c.entity_id for c in generator(span.text, vector)))
                    if ids:
                        rows = [kb.row_of(i) for i in ids]
                        mixed = features.rows(span.text, kb.get_many(ids)) if len(features) else None
                        scores = sigmoid_scores(vector, np.asarray(matrix[rows], dtype=np.float32), mixed, weights,
                                                bias, temperature)
                        ranked = sorted(zip(ids, scores.tolist()), key=lambda pair: -pair[1])
                doc_result.append((span.start, span.end, ranked))
            results.append(doc_result)
        return results

    def set_annotations(self, docs: Iterable[Doc], predictions) -> None:
        """The best candidate becomes ``kb_id_`` when it reaches ``threshold`` (else NIL); the
        ``top_k`` best are kept on ``span._.gliner_candidates``."""
        threshold, top_k = self.cfg["threshold"], self.cfg["top_k"]
        for doc, links in zip(docs, predictions):
            if not links:
                continue
            chosen: Dict[Tuple[int, int], str] = {}
            for start, end, ranked in links:
                span = doc[start:end]
                doc.user_data[(CANDIDATES_KEY, span.start_char, span.end_char)] = [[eid, float(score)] for eid, score in ranked[:top_k]]
                chosen[(start, end)] = ranked[0][0] if ranked and ranked[0][1] >= threshold else NIL
            doc.set_ents([self._relinked(doc, ent, chosen) for ent in doc.ents])
            key = self.cfg["spans_key"]
            if key is not None and key in doc.spans:
                old = doc.spans[key]
                group = SpanGroup(doc, name=key, spans=[self._relinked(doc, s, chosen) for s in old])
                for attr, value in old.attrs.items():
                    group.attrs[attr] = value
                doc.spans[key] = group

    @staticmethod
    def _relinked(doc: Doc, span: Span, chosen: Dict[Tuple[int, int], str]) -> Span:
        kb_id = chosen.get((span.start, span.end))
        if kb_id is None:
            return span
        return Span(doc, span.start, span.end, label=span.label, kb_id=kb_id, span_id=span.id)

    # -- serialization ------------------------------------------------------------------------------
    def to_disk(self, path: Union[str, Path], *, exclude=tuple()) -> None:
        """Fields as spaCy's ``EntityLinker`` saves them (``exclude`` leaves any out): ``cfg``
        (settings, and the KB's absolute path when ``copy_kb`` is false), ``kb`` (a copy of the
        KB when ``copy_kb``), ``checkpoint`` and ``embeddings`` (the entity embedding store)."""
        from ..modeling.checkpoint import save_checkpoint

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if not self.cfg["copy_kb"] and self.kb_source is None:
            raise ValueError(f"{self.name}: 'copy_kb' is false but the KB (from a kb_loader) has no path to save; "
                             "set 'copy_kb' to true.")
        kb_path = None if self.cfg["copy_kb"] else str(Path(self.kb_source).expanduser().resolve())
        settings = {"cfg": self.cfg, "source": self.source, "kb_source": self.kb_source, "kb_path": kb_path}
        serialize = {
            SETTINGS_FILE: lambda p: srsly.write_json(p, settings),
            KB_DIR: self._write_kb,
            CHECKPOINT_DIR: lambda p: save_checkpoint(self.encoder.checkpoint, p),
            EMBEDDINGS_DIR: self._write_embeddings,
        }
        util.to_disk(path, serialize, exclude)

    def _write_kb(self, path: Path) -> None:
        if self.cfg["copy_kb"]:
            self.kb.to_disk(path)

    def _write_embeddings(self, path: Path) -> None:
        if self._store is None or self._store.encoder_id != self.encoder.encoder_id:
            self.prepare_embeddings(progress=False)  # after training: the KB re-embedded by the new weights
        source = Path(self._store.path)
        if source.resolve() != path.resolve():
            path.mkdir(parents=True, exist_ok=True)
            for name in STORE_FILES:
                shutil.copyfile(source / name, path / name)

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "GlinerLinker":
        """Reads the fields ``to_disk`` wrote, but those in ``exclude``: an excluded ``kb`` keeps
        the component's own KB (e.g. one given by ``set_kb``), excluded ``embeddings`` are
        recomputed on first use."""
        path = Path(path)
        saved: Dict[str, Any] = {}

        def read_settings(settings_path: Path) -> None:
            saved.update(srsly.read_json(settings_path))
            self.cfg.update(saved["cfg"])
            self.source = saved.get("source", self.source)
            self.kb_source = saved.get("kb_source", self.kb_source)

        def read_kb(kb_dir: Path) -> None:
            location = kb_dir if kb_dir.exists() else saved.get("kb_path")
            if location is None:
                raise FileNotFoundError(f"{self.name}: {path} holds neither a knowledge base nor its path")
            # An external KB (copy_kb = false) is the one place a saved pipeline depends on a file
            # outside its directory: name the setting so the fix (restore the file, or save with
            # copy_kb = true) is obvious.
            setting = KB_SETTING if location == kb_dir else f"saved in {path / SETTINGS_FILE} because 'copy_kb' is false"
            self._kb = open_linker_kb(self.name, location, setting)

        def read_embeddings(store_dir: Path) -> None:
            from ..kb.embeddings import EmbeddingStore, StaleEmbeddingsError

            self._store_dir = store_dir
            self._store = None  # recomputed on first use when missing or stale
            if self._kb is not None:
                try:
                    self._store = EmbeddingStore.load(store_dir, self._kb, self.encoder.encoder_id)
                except (FileNotFoundError, StaleEmbeddingsError):
                    pass

        if EMBEDDINGS_DIR in exclude:
            self._store, self._store_dir = None, None
        deserialize = {SETTINGS_FILE: read_settings, KB_DIR: read_kb, CHECKPOINT_DIR: self._load, EMBEDDINGS_DIR: read_embeddings}
        util.from_disk(path, deserialize, exclude)
        self._generator = None
        self._features = None
        self._learner = None
        return self

    def _detach_from_directory(self) -> None:
        """``from_bytes``: the directory goes away, so the memory-mapped embeddings are copied."""
        import numpy as np

        if self._store is not None:
            self._store.vectors = np.array(self._store.vectors)
            self._store_dir = None
        self._generator = None
