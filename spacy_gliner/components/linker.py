"""The ``gliner_linker`` component: zero-shot entity linking with a bi-encoder GLiNER.

It links the entities already on the doc (``doc.ents``, and ``doc.spans[spans_key]`` when set):

* candidates come from a registered generator (default: exact alias + fuzzy trigram + dense
  inner product, fused by ``MergedCandidates``) over the knowledge base in ``kb``;
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
``get_loss``): a contrastive loss over each gold mention's candidates (see
``contrastive_linking_loss``); the text tower, span head, label (entity) tower and the score
mixing weights all learn, encoders and heads at separate rates (``training`` setting). Every
update changes the entity encoder, so the entity embedding store is dropped and recomputed on
next use (its encoder id, a digest of the label tower's weights, no longer matches: a stale
store is never used); ``to_disk`` after training therefore re-embeds the KB.

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
from spacy.util import registry

from ..kb import candidates as _candidates  # noqa: F401  (registers the @misc generator builders)
from ..kb.features import FEATURES, check_features
from ..training.settings import check_training_settings
from .annotations import optional_int, warn_counts, word_index, word_span
from .base import CHECKPOINT_DIR, SETTINGS_FILE, GlinerPipe

NIL = "NIL"
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
    kb: str,
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
        nlp.vocab, name=name, model=model, kb=kb, candidates=candidates, threshold=threshold, top_k=top_k,
        spans_key=spans_key, batch_size=batch_size, copy_kb=copy_kb, scorer=scorer, features=features,
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


def _building_from_config() -> bool:
    """Whether ``Language.from_config`` is on the call stack, i.e. the component is being built
    from a config that ``from_disk`` (spacy.load) or ``initialize`` (spacy train) completes."""
    import sys

    target = Language.from_config.__func__.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is target:
            return True
        frame = frame.f_back
    return False


def default_store_dir(source: Union[str, Path]) -> Path:
    """Where the entity embeddings live beside a KB: inside a KB directory, or ``<file>.gliner_embeddings``."""
    path = Path(source).expanduser()
    return path / "gliner_embeddings" if path.is_dir() else path.with_name(path.name + ".gliner_embeddings")


class GlinerLinker(GlinerPipe):
    """Links ``doc.ents`` (and optionally a span group) to a knowledge base, zero-shot."""

    def __init__(
        self,
        vocab,
        name: str = "gliner_linker",
        *,
        model: str,
        kb: str,
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
        if not isinstance(kb, (str, Path)) or not str(kb).strip():
            raise ValueError(f"{name}: 'kb' must be the path of a KB directory, a JSONL file or an SQLite file.")
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"{name}: 'threshold' must be a number in [0, 1), got {threshold!r}.")
        if spans_key is not None and (not isinstance(spans_key, str) or not spans_key):
            raise ValueError(f"{name}: 'spans_key' must be a non-empty string or null.")
        if candidates is not None and not callable(candidates):
            raise ValueError(f"{name}: 'candidates' must be a registered generator, e.g. @misc = \"spacy_gliner.MergedCandidates.v1\".")
        self.vocab = vocab
        self.name = name
        self.source = str(model)
        self.kb_source = str(kb)
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
        self.model = None  # the torch network lives in the encoder; nothing for thinc to train here
        self._encoder = None
        self._kb = None
        self._store = None
        self._store_dir: Optional[Path] = None
        self._generator = None
        self._features = None
        self._trainer = None
        self._mix = None  # training: (weights, bias) torch parameters mirrored in cfg
        self._training_candidates = None
        self._rng = None
        self._validate_local_checkpoint()
        # The KB is read now so a broken, empty or missing one fails at add_pipe. One exception:
        # Language.from_config (spacy.load, spacy train) builds the component from its config
        # before from_disk restores the KB saved with the pipeline, so the config's path may be
        # gone by then without anything being wrong. That case is checked by from_disk (saved
        # pipelines), initialize (training) and the first document (anything else).
        if Path(self.kb_source).expanduser().exists():
            self._kb = self._open_kb(self.kb_source)
            self._store_dir = default_store_dir(self.kb_source)
        elif not _building_from_config():
            raise self._missing_kb(self.kb_source, "its 'kb' setting")

    def _validate_local_checkpoint(self) -> None:
        directory = Path(self.source).expanduser()
        if not directory.is_dir():
            from ..modeling.checkpoint import check_cached_hub_checkpoint

            check_cached_hub_checkpoint(self.source)
            return
        from ..inference.linking import check_linker_checkpoint
        from ..modeling.checkpoint import check_checkpoint_files

        try:
            check_linker_checkpoint(check_checkpoint_files(directory), f"{self.name}: model {self.source!r}")
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}" if not str(err).startswith(self.name) else str(err)) from None

    def _missing_kb(self, source, setting: str) -> FileNotFoundError:
        path = Path(source).expanduser()
        return FileNotFoundError(
            f"{self.name}: the knowledge base {str(path)!r} ({setting}) does not exist; expected a KB directory "
            "(with kb.json), a .jsonl file or an .sqlite file"
        )

    def _open_kb(self, source, setting: str = "its 'kb' setting"):
        from ..kb.base import ensure_not_empty
        from ..kb.opening import open_kb

        if not Path(source).expanduser().exists():
            raise self._missing_kb(source, setting)
        try:
            kb = open_kb(source)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{self.name}: {err}") from None
        except (ValueError, KeyError) as err:
            raise ValueError(f"{self.name}: cannot load the knowledge base {str(source)!r}: {err}") from None
        ensure_not_empty(kb, f"the '{self.name}' component ({source})")
        return kb

    # -- lazily loaded parts -------------------------------------------------------------------
    @property
    def kb(self):
        if self._kb is None:
            self._kb = self._open_kb(self.kb_source)
            self._store_dir = default_store_dir(self.kb_source)
        return self._kb

    @property
    def encoder(self):
        if self._encoder is None:
            self._load(self.source)
        return self._encoder

    def _load(self, source: Union[str, Path]) -> None:
        from ..inference.linking import MentionEncoder
        from ..modeling.checkpoint import load_checkpoint
        from .device import model_device

        checkpoint = load_checkpoint(source)
        checkpoint.model.to(model_device())
        self._encoder = MentionEncoder(checkpoint, batch_size=self.cfg["batch_size"])

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
        self._kb = self._open_kb(kb)
        self.kb_source = str(kb)
        self._store_dir = default_store_dir(kb)
        self._store = None
        self._generator = None
        self._features = None
        self._training_candidates = None
        if copy_kb is not None:
            self.cfg["copy_kb"] = bool(copy_kb)

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

    def _mixing(self) -> Tuple[List[float], float, float]:
        """(feature weights in ``features`` order, bias, temperature) as learned (zeros / 1 untrained)."""
        weights = self.cfg.get("feature_weights") or {}
        return ([float(weights.get(n, 0.0)) for n in self.cfg["features"]], float(self.cfg.get("bias", 0.0)),
                float(self.cfg.get("temperature", 1.0)))

    # -- training ---------------------------------------------------------------------------------
    @property
    def is_trainable(self) -> bool:
        return True

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None) -> None:
        """Load the model and check the gold data: every gold id must be in the KB (error naming
        them). Without gold data the KB is embedded now (progress bar); with it (training) the
        embeddings wait for the first prediction, since every update changes the entity encoder."""
        _ = self.kb  # a KB path missing since the config was read fails here, before any data is read
        if get_examples is not None:
            examples = list(get_examples())
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

    def _gold_mentions(self, example: Example, problems: Counter) -> List[Tuple[List[str], Tuple[int, int], str, Optional[str]]]:
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

    def _get_trainer(self):
        if self._trainer is None:
            import random

            import torch

            from ..training.settings import optimizer_settings
            from ..training.trainer import Trainer

            t = self.training
            weights, bias, _ = self._mixing()
            self.cfg["temperature"] = float(t["temperature"])
            self._mix = (torch.nn.Parameter(torch.tensor(weights, dtype=torch.float32, device=self.encoder.model.device)),
                         torch.nn.Parameter(torch.tensor(bias, dtype=torch.float32, device=self.encoder.model.device)))
            self._trainer = Trainer(self.encoder.model, optimizer_settings(t), extra_parameters=self._mix,
                                    extra_lr=t["feature_lr"])
            self._rng = random.Random(t["seed"])
        return self._trainer

    def _candidates_for_training(self):
        """Training negatives: exact-alias and fuzzy (trigram) candidates, the hard negatives that
        share the mention's surface form. Dense candidates are left out: they would need the
        whole KB re-embedded after every update."""
        if self._training_candidates is None:
            from ..kb.candidates import ExactAliasCandidates, FuzzyCandidates, MergedCandidates

            k = max(1, self.training["negatives"] + 1)
            self._training_candidates = MergedCandidates(
                [ExactAliasCandidates(self.kb, k=k), FuzzyCandidates(self.kb, k=2 * k, min_score=0.3)], k=2 * k)
        return self._training_candidates

    def _link_batch(self, examples: Iterable[Example], sample: bool = True):
        """The tensors-to-be of one training batch, or None when it has nothing to learn from.
        With ``sample``, a batch with more than ``max_mentions`` mentions is sampled down."""
        import numpy as np

        from ..kb.entities import entity_text

        self._get_trainer()
        problems: Counter = Counter()
        items = [item for eg in examples for item in self._gold_mentions(eg, problems)]
        if sample and len(items) > self.training["max_mentions"]:
            items = self._rng.sample(items, self.training["max_mentions"])
        generate, negatives = self._candidates_for_training(), self.training["negatives"]
        columns: Dict[str, int] = {}
        own: List[List[int]] = []
        kept = []
        for words, span, text, gold in items:
            ids = [gold] if gold is not None else []
            ids += [c.entity_id for c in generate(text) if c.entity_id != gold][:negatives]
            if len(ids) < (2 if gold is not None else 1) and not self.training["in_batch_negatives"]:
                continue  # nothing to contrast with
            kept.append((words, span, text, gold))
            own.append([columns.setdefault(eid, len(columns)) for eid in ids])
        if not kept or not any(gold is not None for *_, gold in kept) and not any(own):
            return None
        ids = list(columns)
        entities = self.kb.get_many(ids)
        mask = np.zeros((len(kept), len(ids)), dtype=bool)
        for row, cols in enumerate(own):
            mask[row, cols] = True
        gold = np.array([columns[g] if g is not None else -1 for *_, g in kept], dtype=np.int64)
        features = np.stack([self.features.rows(text, entities) for _, _, text, _ in kept])
        docs: Dict[int, Tuple[List[str], List[Tuple[int, int]]]] = {}
        where = []
        for words, span, _, _ in kept:
            key = id(words)
            docs.setdefault(key, (words, []))[1].append(span)
            where.append((key, len(docs[key][1]) - 1))
        return {"docs": docs, "where": where, "texts": [entity_text(e) for e in entities], "mask": mask,
                "gold": gold, "features": features}

    def _batch_loss(self, batch):
        import torch

        from ..inference.linking import link_logits
        from ..training.losses import contrastive_linking_loss

        encoder, device = self.encoder, self.encoder.model.device
        keys = list(batch["docs"])
        per_doc = encoder.mention_tensors([batch["docs"][k][0] for k in keys], [batch["docs"][k][1] for k in keys])
        by_key = dict(zip(keys, per_doc))
        mentions = torch.stack([by_key[key][i] for key, i in batch["where"]])
        entities = encoder.entity_tensors(batch["texts"])
        weights, bias = self._mix
        logits = link_logits(mentions @ entities.T, torch.from_numpy(batch["features"]).to(device), weights, bias,
                             self.cfg["temperature"])
        t = self.training
        return contrastive_linking_loss(logits, torch.from_numpy(batch["gold"]).to(device),
                                        torch.from_numpy(batch["mask"]).to(device), t["in_batch_negatives"],
                                        t["binary_weight"])

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """One contrastive training step on the gold links of a batch (the component's own AdamW:
        spaCy's ``sgd`` is not used, encoders and heads learn at separate rates)."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        batch = self._link_batch(examples)
        if batch is None:
            return losses
        losses[self.name] += self._trainer.apply(lambda: self._batch_loss(batch))
        self._weights_changed()
        return losses

    def get_loss(self, examples: Iterable[Example]) -> float:
        """The training loss on these examples (every mention, none sampled away), without
        updating (e.g. for a dev set)."""
        import torch

        batch = self._link_batch(examples, sample=False)
        if batch is None:
            return 0.0
        with torch.no_grad():
            return float(self._batch_loss(batch).item())

    def _weights_changed(self) -> None:
        """After an update: the entity encoder changed, so the embedding store (and the dense
        generator reading it) is dropped and recomputed on next use; mixing weights to cfg."""
        weights, bias = self._mix
        self.cfg["feature_weights"] = dict(zip(self.cfg["features"], (float(w) for w in weights.detach().cpu())))
        self.cfg["bias"] = float(bias.detach().cpu())
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
        """Per doc: (start, end, ranked candidates) for every mention."""
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
        vectors = self.encoder.mention_vectors(words_per_doc, [[s for s in found if s is not None] for found in word_spans])
        generator, kb, store = self.generator, self.kb, self.store
        matrix = store.vectors
        features = self.features
        weights, bias, temperature = self._mixing()
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
                doc_result.append((span.start, span.end, ranked[: self.cfg["top_k"]]))
            results.append(doc_result)
        return results

    def set_annotations(self, docs: Iterable[Doc], predictions) -> None:
        threshold = self.cfg["threshold"]
        for doc, links in zip(docs, predictions):
            if not links:
                continue
            chosen: Dict[Tuple[int, int], str] = {}
            for start, end, ranked in links:
                span = doc[start:end]
                doc.user_data[(CANDIDATES_KEY, span.start_char, span.end_char)] = [[eid, float(score)] for eid, score in ranked]
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
        """Checkpoint, KB (or its absolute path when ``copy_kb`` is false) and embedding store."""
        from ..modeling.checkpoint import save_checkpoint

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self._store is None or self._store.encoder_id != self.encoder.encoder_id:
            self.prepare_embeddings(progress=False)  # after training: the KB re-embedded by the new weights
        store = self._store
        kb_path = None
        if self.cfg["copy_kb"]:
            self.kb.to_disk(path / KB_DIR)
        else:
            kb_path = str(Path(self.kb_source).expanduser().resolve())
        srsly.write_json(path / SETTINGS_FILE, {"cfg": self.cfg, "source": self.source, "kb_source": self.kb_source, "kb_path": kb_path})
        save_checkpoint(self.encoder.checkpoint, path / CHECKPOINT_DIR)
        target = path / EMBEDDINGS_DIR
        if Path(store.path).resolve() != target.resolve():
            target.mkdir(parents=True, exist_ok=True)
            for name in STORE_FILES:
                shutil.copyfile(Path(store.path) / name, target / name)

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "GlinerLinker":
        path = Path(path)
        saved = srsly.read_json(path / SETTINGS_FILE)
        self.cfg.update(saved["cfg"])
        self.source = saved.get("source", self.source)
        self.kb_source = saved.get("kb_source", self.kb_source)
        kb_location = path / KB_DIR if (path / KB_DIR).exists() else saved.get("kb_path")
        if kb_location is None:
            raise FileNotFoundError(f"{self.name}: {path} holds neither a knowledge base nor its path")
        # An external KB (copy_kb = false) is the one place a saved pipeline depends on a file
        # outside its directory: name the setting so the fix (restore the file, or save with
        # copy_kb = true) is obvious.
        setting = "its 'kb' setting" if kb_location == path / KB_DIR else f"saved in {path / SETTINGS_FILE} because 'copy_kb' is false"
        self._kb = self._open_kb(kb_location, setting)
        self._store_dir = path / EMBEDDINGS_DIR
        self._load(path / CHECKPOINT_DIR)
        from ..kb.embeddings import EmbeddingStore, StaleEmbeddingsError

        try:
            self._store = EmbeddingStore.load(self._store_dir, self._kb, self._encoder.encoder_id)
        except (FileNotFoundError, StaleEmbeddingsError):
            self._store = None  # recomputed on first use
        self._generator = None
        self._features = None
        self._trainer = None
        self._training_candidates = None
        return self

    def _detach_from_directory(self) -> None:
        """``from_bytes``: the directory goes away, so the memory-mapped embeddings are copied."""
        import numpy as np

        if self._store is not None:
            self._store.vectors = np.array(self._store.vectors)
            self._store_dir = None
        self._generator = None
