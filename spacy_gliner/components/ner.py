"""The ``gliner_ner`` component: zero-shot NER with any GLiNER checkpoint.

Torch and transformers are imported only when the model is first needed: spaCy imports every
installed factory module whenever it creates a ``Language``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import srsly
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from .base import CHECKPOINT_DIR, SETTINGS_FILE, GlinerPipe
from .annotations import doc_words, merge_entities, normalize_labels, optional_int, to_doc_span, write_span_group

LABEL_CACHE_DIR = "label_cache"

DEFAULT_NER_CONFIG: Dict[str, Any] = {
    "labels": [],
    "threshold": 0.5,
    "nested": False,
    "multi_label": False,
    "spans_key": "sc",
    "overwrite_ents": False,
    "batch_size": 8,
    "max_window_words": None,
    "window_overlap": None,
    "label_cache_dtype": "float32",
    "scorer": {"@scorers": "spacy_gliner.ner_scorer.v1"},
}


@Language.factory(
    "gliner_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config=DEFAULT_NER_CONFIG,
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_gliner_ner(
    nlp: Language,
    name: str,
    model: str,
    labels: Union[List[str], Dict[str, str]],
    threshold: float,
    nested: bool,
    multi_label: bool,
    spans_key: str,
    overwrite_ents: bool,
    batch_size: int,
    max_window_words: Optional[int],
    window_overlap: Optional[int],
    label_cache_dtype: str,
    scorer: Optional[Callable],
) -> "GlinerNER":
    return GlinerNER(
        nlp.vocab,
        name=name,
        model=model,
        labels=labels,
        threshold=threshold,
        nested=nested,
        multi_label=multi_label,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        batch_size=batch_size,
        max_window_words=max_window_words,
        window_overlap=window_overlap,
        label_cache_dtype=label_cache_dtype,
        scorer=scorer,
    )


def score_gliner_ner(examples: Iterable[Example], spans_key: str = "sc", **kwargs) -> Dict[str, Any]:
    """``ents_p/r/f`` and per-type scores for ``doc.ents``, plus ``spans_<key>_p/r/f`` for the span group."""
    examples = list(examples)
    scores = Scorer.score_spans(examples, "ents", **kwargs)
    scores.update(_score_span_group(examples, spans_key, **kwargs))
    return scores


def _score_span_group(examples: List[Example], spans_key: str, **kwargs) -> Dict[str, Any]:
    kwargs = dict(kwargs)
    kwargs.setdefault("getter", lambda doc, key: doc.spans.get(key[len("spans_"):], []))
    kwargs.setdefault("allow_overlap", True)
    kwargs.setdefault("has_annotation", lambda doc: spans_key in doc.spans)
    return Scorer.score_spans(examples, f"spans_{spans_key}", **kwargs)


@registry.scorers("spacy_gliner.ner_scorer.v1")
def make_ner_scorer() -> Callable:
    return score_gliner_ner


class GlinerNER(GlinerPipe):
    """Zero-shot NER: every decoded span in ``doc.spans[spans_key]``, the best of them in ``doc.ents``."""

    def __init__(
        self,
        vocab,
        name: str = "gliner_ner",
        *,
        model: str,
        labels: Union[List[str], Dict[str, str]],
        threshold: float = 0.5,
        nested: bool = False,
        multi_label: bool = False,
        spans_key: str = "sc",
        overwrite_ents: bool = False,
        batch_size: int = 8,
        max_window_words: Optional[int] = None,
        window_overlap: Optional[int] = None,
        label_cache_dtype: str = "float32",
        scorer: Optional[Callable] = score_gliner_ner,
    ):
        if not isinstance(model, (str, Path)) or not str(model).strip():
            raise ValueError("gliner_ner: 'model' must be a checkpoint directory or a hub id, e.g. 'urchade/gliner_small-v2.1'.")
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"gliner_ner: 'threshold' must be a number in [0, 1), got {threshold!r}.")
        if not isinstance(spans_key, str) or not spans_key:
            raise ValueError("gliner_ner: 'spans_key' must be a non-empty string.")
        if label_cache_dtype not in ("float32", "float16"):
            raise ValueError(f"gliner_ner: 'label_cache_dtype' must be 'float32' or 'float16', got {label_cache_dtype!r}.")
        self.vocab = vocab
        self.name = name
        self.source = str(model)
        self._label_names, self.label_texts = normalize_labels(labels, "gliner_ner 'labels'") if labels else ([], [])
        self.cfg: Dict[str, Any] = {
            "threshold": float(threshold),
            "nested": bool(nested),
            "multi_label": bool(multi_label),
            "spans_key": spans_key,
            "overwrite_ents": bool(overwrite_ents),
            "batch_size": optional_int(batch_size, "gliner_ner 'batch_size'", 1),
            "max_window_words": optional_int(max_window_words, "gliner_ner 'max_window_words'", 2),
            "window_overlap": optional_int(window_overlap, "gliner_ner 'window_overlap'", 0),
            "label_cache_dtype": label_cache_dtype,
        }
        self.scorer = scorer
        self._extractor = None
        self.model = None  # the torch network lives in the extractor; nothing for thinc to train here
        self._validate_local_checkpoint()

    def _validate_local_checkpoint(self) -> None:
        """Fail at ``add_pipe`` for what can be checked cheaply: files present, labels that fit.

        Only for a local directory that exists: a pipeline being loaded with ``spacy.load`` is
        built from its config first, when the original checkpoint path may be long gone.
        """
        directory = Path(self.source).expanduser()
        if not directory.is_dir():
            return
        from ..modeling.checkpoint import check_checkpoint_files, label_lengths

        check_checkpoint_files(directory)
        if self.label_texts:
            label_lengths(directory, self.label_texts)

    @property
    def labels(self):
        """Label names as they appear on spans, in prompt order."""
        return tuple(self._label_names)

    @property
    def label_descriptions(self) -> Dict[str, str]:
        """What the model reads for each label."""
        return dict(zip(self._label_names, self.label_texts))

    # -- model ------------------------------------------------------------------------------
    @property
    def extractor(self):
        if self._extractor is None:
            self._load(self.source)
        return self._extractor

    def _load(self, source: Union[str, Path], label_cache: Optional[Path] = None) -> None:
        from ..extraction import EntityExtractor
        from ..modeling.checkpoint import load_checkpoint
        from .device import model_device

        checkpoint = load_checkpoint(source)
        checkpoint.model.to(model_device())
        extractor = EntityExtractor(
            checkpoint,
            batch_size=self.cfg["batch_size"],
            max_window_words=self.cfg["max_window_words"],
            window_overlap=self.cfg["window_overlap"],
            label_cache_dtype=self.cfg["label_cache_dtype"],
        )
        extractor.check_labels(self.label_texts)
        if label_cache is not None and extractor.label_cache is not None:
            extractor.label_cache.from_disk(label_cache)
        self._extractor = extractor

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None, labels=None) -> None:
        """Load the checkpoint; labels may come from ``[initialize.components.<name>]``."""
        if labels is not None:
            self._label_names, self.label_texts = normalize_labels(labels, f"{self.name} initialize 'labels'")
        if not self._label_names and get_examples is not None:
            found = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
            self._label_names, self.label_texts = list(found), list(found)
        self._require_labels()
        self.extractor.check_labels(self.label_texts)
        if self.extractor.label_cache is not None:
            self.extractor.prepare_label_vectors(self.label_texts)

    def add_label(self, label: str, description: Optional[str] = None) -> int:
        names, texts = normalize_labels({label: description or label}, f"{self.name}.add_label")
        if label in self._label_names:
            return 0
        if self._extractor is not None:
            self._extractor.check_labels(texts)
            if self._extractor.label_cache is not None:
                self._extractor.prepare_label_vectors(texts)
        self._label_names.append(names[0])
        self.label_texts.append(texts[0])
        return 1

    def _require_labels(self) -> None:
        if not self._label_names:
            raise ValueError(
                f"{self.name}: no labels. Give them in the config (config={{'labels': ['person', ...]}}), "
                "with add_label, or in [initialize.components] for training."
            )

    # -- inference ----------------------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]):
        from ..extraction import DecodeSettings

        docs = list(docs)
        self._require_labels()
        words = [doc_words(doc)[0] for doc in docs]
        settings = DecodeSettings(self.cfg["threshold"], self.cfg["nested"], self.cfg["multi_label"])
        return self.extractor.extract(words, self.label_texts, settings)

    def set_annotations(self, docs: Iterable[Doc], decoded) -> None:
        from ..decoding import best_non_overlapping

        for doc, spans in zip(docs, decoded):
            _, token_ids = doc_words(doc)
            doc_spans = {s: to_doc_span(doc, token_ids, s.start, s.end, self._label_names[s.label]) for s in spans}
            write_span_group(doc, self.cfg["spans_key"], list(doc_spans.values()), [s.score for s in spans])
            merge_entities(doc, [doc_spans[s] for s in best_non_overlapping(spans)], self.cfg["overwrite_ents"])

    # -- serialization ------------------------------------------------------------------------
    def to_disk(self, path: Union[str, Path], *, exclude=tuple()) -> None:
        from ..modeling.checkpoint import save_checkpoint

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(
            path / SETTINGS_FILE,
            {"labels": self._label_names, "label_texts": self.label_texts, "cfg": self.cfg, "source": self.source},
        )
        extractor = self.extractor
        save_checkpoint(extractor.checkpoint, path / CHECKPOINT_DIR)
        if extractor.label_cache is not None:
            extractor.prepare_label_vectors(self.label_texts, progress=False)
            extractor.label_cache.to_disk(path / LABEL_CACHE_DIR)

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "GlinerNER":
        path = Path(path)
        saved = srsly.read_json(path / SETTINGS_FILE)
        self._label_names, self.label_texts = list(saved["labels"]), list(saved["label_texts"])
        self.cfg.update(saved["cfg"])
        self.source = saved.get("source", self.source)
        cache = path / LABEL_CACHE_DIR
        self._load(path / CHECKPOINT_DIR, cache if cache.exists() else None)
        return self

    def _detach_from_directory(self) -> None:
        if self._extractor.label_cache is not None:
            self._extractor.label_cache.load_into_memory()
