"""The ``gliner_relex`` component: joint zero-shot entity and relation extraction with a GLiNER relex checkpoint.

Entities are written exactly as ``gliner_ner`` writes them (every decoded span in
``doc.spans[spans_key]`` with scores, the best non-overlapping ones merged into ``doc.ents``);
relations go through :func:`spacy_gliner.relations.set_relations`, so ``doc._.relations`` and
``doc._.rel`` work and survive ``doc.to_bytes()``.

Torch and transformers are imported only when the model is first needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import warnings

import srsly
from spacy.language import Language
from spacy.tokens import Doc

from .. import relations as _relations  # registers doc._.relations / doc._.rel
from .base import CHECKPOINT_DIR, SETTINGS_FILE, GlinerPipe
from .annotations import doc_words, normalize_labels, optional_int, write_entities
from .ner import score_gliner_ner  # noqa: F401  (registers spacy_gliner.ner_scorer.v1)


DEFAULT_RELEX_CONFIG: Dict[str, Any] = {
    "labels": [],
    "relations": [],
    "threshold": 0.5,
    "relation_threshold": None,
    "adjacency_threshold": None,
    "nested": False,
    "spans_key": "sc",
    "overwrite_ents": False,
    "batch_size": 8,
    "max_window_words": None,
    "window_overlap": None,
    "max_pairs": 10_000,
    "use_doc_ents": False,
    "scorer": {"@scorers": "spacy_gliner.ner_scorer.v1"},
}

@Language.factory(
    "gliner_relex",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans", "doc._.gliner_relations"],
    default_config=DEFAULT_RELEX_CONFIG,
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_gliner_relex(
    nlp: Language,
    name: str,
    model: str,
    labels: Union[List[str], Dict[str, str]],
    relations: Union[List[str], Dict[str, str]],
    threshold: float,
    relation_threshold: Optional[float],
    adjacency_threshold: Optional[float],
    nested: bool,
    spans_key: str,
    overwrite_ents: bool,
    batch_size: int,
    max_window_words: Optional[int],
    window_overlap: Optional[int],
    max_pairs: int,
    use_doc_ents: bool,
    scorer: Optional[Callable],
) -> "GlinerRelex":
    return GlinerRelex(
        nlp.vocab,
        name=name,
        model=model,
        labels=labels,
        relations=relations,
        threshold=threshold,
        relation_threshold=relation_threshold,
        adjacency_threshold=adjacency_threshold,
        nested=nested,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        batch_size=batch_size,
        max_window_words=max_window_words,
        window_overlap=window_overlap,
        max_pairs=max_pairs,
        use_doc_ents=use_doc_ents,
        scorer=scorer,
    )


def _probability(value, name: str, optional: bool) -> Optional[float]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"gliner_relex: {name!r} must be a number in [0, 1){' or null' if optional else ''}, got {value!r}.")
    return float(value)


class GlinerRelex(GlinerPipe):
    """Entities like ``gliner_ner``, plus directed labelled relations between them."""

    def __init__(
        self,
        vocab,
        name: str = "gliner_relex",
        *,
        model: str,
        labels: Union[List[str], Dict[str, str]],
        relations: Union[List[str], Dict[str, str]],
        threshold: float = 0.5,
        relation_threshold: Optional[float] = None,
        adjacency_threshold: Optional[float] = None,
        nested: bool = False,
        spans_key: str = "sc",
        overwrite_ents: bool = False,
        batch_size: int = 8,
        max_window_words: Optional[int] = None,
        window_overlap: Optional[int] = None,
        max_pairs: int = 10_000,
        use_doc_ents: bool = False,
        scorer: Optional[Callable] = score_gliner_ner,
    ):
        if not isinstance(model, (str, Path)) or not str(model).strip():
            raise ValueError("gliner_relex: 'model' must be a relex checkpoint directory or a hub id.")
        if not isinstance(spans_key, str) or not spans_key:
            raise ValueError("gliner_relex: 'spans_key' must be a non-empty string.")
        if not labels and not use_doc_ents:
            raise ValueError(
                "gliner_relex: no entity labels. Give them in the config, e.g. "
                "config={'labels': ['person', 'organisation'], 'relations': ['works for']}, or set "
                "use_doc_ents=True to take the entities already on the doc."
            )
        if not relations:
            raise ValueError(
                "gliner_relex: no relation labels. Give them in the config, e.g. "
                "config={'labels': [...], 'relations': ['works for', 'located in']} "
                "(a list, or a dict relation -> description); use gliner_ner for entities only."
            )
        self.vocab = vocab
        self.name = name
        self.source = str(model)
        self._label_names, self.label_texts = normalize_labels(labels, "gliner_relex 'labels'") if labels else ([], [])
        self._relation_names, self.relation_texts = normalize_labels(relations, "gliner_relex 'relations'")
        _check_collisions(self._label_names, self.label_texts, self._relation_names, self.relation_texts)
        max_pairs = optional_int(max_pairs, "gliner_relex 'max_pairs'", 1)
        if max_pairs is None:
            raise ValueError("gliner_relex 'max_pairs' must be an integer >= 1, got None.")
        self.cfg: Dict[str, Any] = {
            "threshold": _probability(threshold, "threshold", False),
            "relation_threshold": _probability(relation_threshold, "relation_threshold", True),
            "adjacency_threshold": _probability(adjacency_threshold, "adjacency_threshold", True),
            "nested": bool(nested),
            "spans_key": spans_key,
            "overwrite_ents": bool(overwrite_ents),
            "batch_size": optional_int(batch_size, "gliner_relex 'batch_size'", 1),
            "max_window_words": optional_int(max_window_words, "gliner_relex 'max_window_words'", 2),
            "window_overlap": optional_int(window_overlap, "gliner_relex 'window_overlap'", 0),
            "max_pairs": max_pairs,
            "use_doc_ents": bool(use_doc_ents),
        }
        self.scorer = scorer
        self._extractor = None
        self.model = None  # the torch network lives in the extractor
        self._validate_local_checkpoint()

    def _validate_local_checkpoint(self) -> None:
        """Fail at ``add_pipe`` for a local checkpoint that is not relex or whose labels do not fit."""
        directory = Path(self.source).expanduser()
        if not directory.is_dir():
            return
        from ..modeling.checkpoint import check_checkpoint_files, label_lengths

        config = check_checkpoint_files(directory)
        if not config.relex:
            raise ValueError(
                f"gliner_relex: {directory} is not a relex checkpoint (no 'relations_layer' in gliner_config.json); "
                "use gliner_ner for it."
            )
        label_lengths(directory, self.label_texts + self.relation_texts)
        if config.encoder_config is not None:
            from ..extraction import prompt_budget
            from ..modeling.checkpoint import _load_tokenizer
            from ..modeling.inputs import InputBuilder

            inputs = InputBuilder(_load_tokenizer(directory, config.model_name, []), config)
            length, limit = len(inputs.relex_prompt_ids(self.label_texts, self.relation_texts)), prompt_budget(inputs)
            if length > limit:
                raise ValueError(_prompt_too_long(len(self.label_texts), len(self.relation_texts), length, limit))

    @property
    def labels(self):
        return tuple(self._label_names)

    @property
    def relation_labels(self):
        return tuple(self._relation_names)

    # -- model ------------------------------------------------------------------------------
    @property
    def extractor(self):
        if self._extractor is None:
            self._load(self.source)
        return self._extractor

    def _load(self, source: Union[str, Path]) -> None:
        from ..modeling.checkpoint import load_checkpoint
        from ..relex_extraction import RelationExtractor
        from .device import model_device

        checkpoint = load_checkpoint(source)
        checkpoint.model.to(model_device())
        extractor = RelationExtractor(
            checkpoint,
            batch_size=self.cfg["batch_size"],
            max_window_words=self.cfg["max_window_words"],
            window_overlap=self.cfg["window_overlap"],
        )
        extractor.check_relex_labels(self.label_texts, self.relation_texts)
        self._extractor = extractor

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None) -> None:
        """Load the checkpoint and check that the labels fit."""
        self.extractor.check_relex_labels(self.label_texts, self.relation_texts)

    # -- inference ----------------------------------------------------------------------------
    def _settings(self):
        from ..relex_extraction import RelexSettings

        return RelexSettings(
            threshold=self.cfg["threshold"],
            relation_threshold=self.cfg["relation_threshold"],
            adjacency_threshold=self.cfg["adjacency_threshold"],
            nested=self.cfg["nested"],
            max_pairs=self.cfg["max_pairs"],
        )

    def predict(self, docs: Iterable[Doc]):
        docs = list(docs)
        words = [doc_words(doc)[0] for doc in docs]
        if self.cfg["use_doc_ents"]:
            return self._predict_between_doc_ents(docs, words)
        return self.extractor.extract_relations(words, self.label_texts, self.relation_texts, self._settings())

    def _predict_between_doc_ents(self, docs: List[Doc], words):
        """use_doc_ents: relations among ``doc.ents`` as they are; the prompt's entity part is the
        configured labels, or (none configured) the doc's own entity labels, prompt-style."""
        spans, texts = [], []
        for doc in docs:
            word_of = {token: i for i, token in enumerate(doc_words(doc)[1])}
            doc_spans = []
            for ent in doc.ents:
                inside = [word_of[t] for t in range(ent.start, ent.end) if t in word_of]
                doc_spans.append((inside[0], inside[-1] + 1) if inside else None)
            spans.append(doc_spans)
            texts.append(self.label_texts or _prompt_labels(ent.label_ for ent in doc.ents))
        usable = [[span for span in doc_spans if span is not None] for doc_spans in spans]
        found, unusable = self.extractor.relations_between(words, usable, texts, self.relation_texts, self._settings())
        if unusable:
            warnings.warn(
                f"{self.name}: {unusable} entities of doc.ents fit in no model window (wider than the "
                f"checkpoint's max_width of {self.extractor.config.max_width} words, or than a window); "
                "they take part in no relation.",
                stacklevel=3,
            )
        results = []
        for doc_spans, doc_usable, relations in zip(spans, usable, found):
            ent_index = [i for i, span in enumerate(doc_spans) if span is not None]
            results.append([rel._replace(head=ent_index[rel.head], tail=ent_index[rel.tail]) for rel in relations])
        return results

    def set_annotations(self, docs: Iterable[Doc], results) -> None:
        for doc, result in zip(docs, results):
            if self.cfg["use_doc_ents"]:
                doc_spans, relations = list(doc.ents), result
            else:
                doc_spans = write_entities(
                    doc, result.entities, self._label_names, self.cfg["spans_key"], self.cfg["overwrite_ents"]
                )
                relations = result.relations
            found = []
            for rel in relations:
                head, tail = doc_spans[rel.head], doc_spans[rel.tail]
                found.append((head.start, head.end, tail.start, tail.end, self._relation_names[rel.label], rel.score))
            _relations.set_relations(doc, found)

    # -- serialization ------------------------------------------------------------------------
    def to_disk(self, path: Union[str, Path], *, exclude=tuple()) -> None:
        from ..modeling.checkpoint import save_checkpoint

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(
            path / SETTINGS_FILE,
            {
                "labels": self._label_names,
                "label_texts": self.label_texts,
                "relations": self._relation_names,
                "relation_texts": self.relation_texts,
                "cfg": self.cfg,
                "source": self.source,
            },
        )
        save_checkpoint(self.extractor.checkpoint, path / CHECKPOINT_DIR)

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "GlinerRelex":
        path = Path(path)
        saved = srsly.read_json(path / SETTINGS_FILE)
        self._label_names, self.label_texts = list(saved["labels"]), list(saved["label_texts"])
        self._relation_names, self.relation_texts = list(saved["relations"]), list(saved["relation_texts"])
        self.cfg.update(saved["cfg"])
        self.source = saved.get("source", self.source)
        self._load(path / CHECKPOINT_DIR)
        return self


def _prompt_labels(labels: Iterable[str]) -> List[str]:
    """A doc's distinct entity labels as the model reads them (``ORG`` -> ``organization``), sorted."""
    from ..training.corpora import normalize_label

    return sorted({normalize_label(label) for label in labels})


def _check_collisions(label_names, label_texts, relation_names, relation_texts) -> None:
    entity_names = {name.casefold(): name for name in label_names}
    entity_texts = {text.strip().casefold(): name for name, text in zip(label_names, label_texts)}
    for name, text in zip(relation_names, relation_texts):
        clash = entity_names.get(name.casefold()) or entity_texts.get(text.strip().casefold())
        if clash is not None:
            raise ValueError(
                f"gliner_relex: relation label {name!r} collides with entity label {clash!r}. Entity and "
                "relation labels share one prompt and one label namespace on the Doc; give them different names "
                "(e.g. 'works for' for the relation, 'employer' for the entity)."
            )


def _prompt_too_long(n_entities: int, n_relations: int, length: int, limit: int) -> str:
    return (
        f"gliner_relex: the {n_entities} entity and {n_relations} relation labels take {length} subwords "
        f"together, but at most {limit} fit in the encoder window beside the text. A relex prompt cannot be "
        "split into groups (relations are scored between entities of all labels in one pass); use fewer or "
        "shorter labels or descriptions."
    )
