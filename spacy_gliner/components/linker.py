"""The ``gliner_linker`` component: zero-shot entity linking with a bi-encoder GLiNER.

It links the entities already on the doc (``doc.ents``, and ``doc.spans[spans_key]`` when set):

* candidates come from a registered generator (default: exact alias + fuzzy trigram + dense
  inner product, fused by ``MergedCandidates``) over the knowledge base in ``kb``;
* every candidate is scored ``sigmoid(entity . mention)``: the entity vector is the label
  tower's vector of ``entity_text(entity)`` (computed once, stored float16 beside the KB), the
  mention vector the span head's vector of the mention (see ``spacy_gliner.linking``);
* the best candidate becomes ``span.kb_id_`` when its score reaches ``threshold``; otherwise,
  and for mentions without candidates, ``kb_id_`` is ``"NIL"`` (spaCy's ``EntityLinker``
  convention, and a negative label for the scorer);
* the ``top_k`` ranked candidates with their scores are on ``span._.gliner_candidates``
  (``[(entity id, score), ...]``, best first; ``[]`` when there were none, ``None`` for a span
  this component never linked). The data lives in ``doc.user_data`` under
  ``("spacy_gliner.candidates", start, end)``, so it survives ``doc.to_bytes``.

Torch, transformers and the KB are loaded lazily or at ``add_pipe`` as noted in the code.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import srsly
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from spacy.util import registry

from ..kb import candidates as _candidates  # noqa: F401  (registers the @misc generator builders)
from .annotations import doc_words, optional_int
from .base import CHECKPOINT_DIR, SETTINGS_FILE, GlinerPipe

NIL = "NIL"
NEGATIVE_LABELS = (NIL, "")
CANDIDATES_KEY = "spacy_gliner.candidates"
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

DEFAULT_LINKER_CONFIG: Dict[str, Any] = {
    "candidates": DEFAULT_CANDIDATES,
    "threshold": 0.5,
    "top_k": 5,
    "spans_key": None,
    "batch_size": 8,
    "copy_kb": True,
    "scorer": {"@scorers": "spacy_gliner.linker_scorer.v1"},
}


def _get_candidates(span: Span) -> Optional[List[Tuple[str, float]]]:
    stored = span.doc.user_data.get((CANDIDATES_KEY, span.start, span.end))
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
) -> "GlinerLinker":
    return GlinerLinker(
        nlp.vocab, name=name, model=model, kb=kb, candidates=candidates, threshold=threshold, top_k=top_k,
        spans_key=spans_key, batch_size=batch_size, copy_kb=copy_kb, scorer=scorer,
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


def open_kb(source: Union[str, Path]):
    """A KB from a serialised KB directory (``kb.json``), a JSONL file or an SQLite file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"knowledge base {str(path)!r} not found")
    if path.is_dir():
        from ..kb.base import load_kb

        return load_kb(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        from ..kb.memory import InMemoryKB

        return InMemoryKB.from_jsonl(path)
    if path.suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        from ..kb.sqlite import SQLiteKB

        return SQLiteKB(path)
    raise ValueError(
        f"knowledge base {str(path)!r}: expected a KB directory (with kb.json), a .jsonl file or an .sqlite file"
    )


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
        }
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
        self._validate_local_checkpoint()
        # The KB is read now so a broken or empty one fails at add_pipe. A path that does not
        # exist is left for later: spacy.load builds the component from its config before
        # from_disk restores the KB saved with it.
        if Path(self.kb_source).expanduser().exists():
            self._kb = self._open_kb(self.kb_source)
            self._store_dir = default_store_dir(self.kb_source)

    def _validate_local_checkpoint(self) -> None:
        directory = Path(self.source).expanduser()
        if not directory.is_dir():
            return
        from ..linking import check_linker_checkpoint
        from ..modeling.checkpoint import check_checkpoint_files

        try:
            check_linker_checkpoint(check_checkpoint_files(directory), f"{self.name}: model {self.source!r}")
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}" if not str(err).startswith(self.name) else str(err)) from None

    def _open_kb(self, source):
        from ..kb.base import ensure_not_empty

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
        from ..linking import MentionEncoder
        from ..modeling.checkpoint import load_checkpoint
        from .device import model_device

        checkpoint = load_checkpoint(source)
        checkpoint.model.to(model_device())
        self._encoder = MentionEncoder(checkpoint, batch_size=self.cfg["batch_size"])

    @property
    def store(self):
        """The entity embedding store, computed (with a progress bar) or updated when missing or stale."""
        if self._store is None:
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

    @property
    def generator(self):
        if self._generator is None:
            builder = self.candidates_builder
            if builder is None:
                builder = default_candidates()
            self._generator = builder(self.kb, self.store, self.encoder.encode_entities)
        return self._generator

    # -- training-side checks --------------------------------------------------------------------
    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None) -> None:
        """Load the model, embed the KB (progress bar), and check gold ids against the KB."""
        if get_examples is not None:
            unknown = self._unknown_gold_ids(get_examples())
            if unknown:
                shown = ", ".join(repr(i) for i in unknown[:5])
                raise ValueError(
                    f"{self.name}: {len(unknown)} gold entity id(s) are not in the knowledge base "
                    f"({len(self.kb)} entities): {shown}{' ...' if len(unknown) > 5 else ''}. Add them to the KB or "
                    f"set their kb_id to {NIL!r}."
                )
        self.prepare_embeddings(progress=True)
        _ = self.generator

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
        from ..linking import sigmoid_scores
        import numpy as np

        docs = list(docs)
        mentions = [self._mentions(doc) for doc in docs]
        if not any(mentions):
            return [[] for _ in docs]  # nothing to link: the model is not even loaded
        words_per_doc, word_spans = [], []
        for doc, spans in zip(docs, mentions):
            words, token_ids = doc_words(doc)
            word_of = {t: w for w, t in enumerate(token_ids)}
            words_per_doc.append(words)
            found = []
            for span in spans:
                inside = [word_of[t] for t in range(span.start, span.end) if t in word_of]
                found.append((inside[0], inside[-1] + 1) if inside else None)
            word_spans.append(found)
        vectors = self.encoder.mention_vectors(words_per_doc, [[s for s in found if s is not None] for found in word_spans])
        generator, kb, store = self.generator, self.kb, self.store
        matrix = store.vectors
        results = []
        for spans, found, doc_vectors in zip(mentions, word_spans, vectors):
            doc_result = []
            row = 0
            for span, word_span in zip(spans, found):
                ranked: List[Tuple[str, float]] = []
                if word_span is not None:
                    vector = doc_vectors[row]
                    row += 1
                    ids = list(dict.fromkeys(c.entity_id for c in generator(span.text, vector)))
                    if ids:
                        rows = [kb.row_of(i) for i in ids]
                        scores = sigmoid_scores(vector, np.asarray(matrix[rows], dtype=np.float32))
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
                doc.user_data[(CANDIDATES_KEY, start, end)] = [[eid, float(score)] for eid, score in ranked]
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
        store = self._store if self._store is not None else None
        if store is None:
            self.prepare_embeddings(progress=False)
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
        self._kb = self._open_kb(kb_location)
        self._store_dir = path / EMBEDDINGS_DIR
        self._load(path / CHECKPOINT_DIR)
        from ..kb.embeddings import EmbeddingStore, StaleEmbeddingsError

        try:
            self._store = EmbeddingStore.load(self._store_dir, self._kb, self._encoder.encoder_id)
        except (FileNotFoundError, StaleEmbeddingsError):
            self._store = None  # recomputed on first use
        self._generator = None
        return self

    def _detach_from_directory(self) -> None:
        """``from_bytes``: the directory goes away, so the memory-mapped embeddings are copied."""
        import numpy as np

        if self._store is not None:
            self._store.vectors = np.array(self._store.vectors)
            self._store_dir = None
        self._generator = None
