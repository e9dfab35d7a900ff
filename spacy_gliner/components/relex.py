"""The ``gliner_relex`` component: joint zero-shot entity and relation extraction with a GLiNER relex checkpoint.

Entities are written exactly as ``gliner_ner`` writes them (every decoded span in
``doc.spans[spans_key]`` with scores, the best non-overlapping ones merged into ``doc.ents``);
relations go through :func:`spacy_gliner.doc_relations.set_relations`, so ``doc._.relations`` and
``doc._.rel`` work and survive ``doc.to_bytes()``.

Torch and transformers are imported only when the model is first needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import warnings

from spacy.language import Language
from spacy.tokens import Doc

from spacy.training import Example
from spacy.util import registry

from .. import doc_relations as _relations  # registers doc._.relations / doc._.rel
from .base import GlinerPipe, check_backend_settings, local_checkpoint_config
from ..training.settings import check_training_settings
from .annotations import (
    doc_words, normalize_labels, optional_int, warn_counts, word_index, word_span, write_entities,
)
from .ner import score_gliner_ner  # noqa: F401  (registers spacy_gliner.ner_scorer.v1)
from .trainable import (
    DEFAULT_TRAINING, NEW_MODEL_KEYS, TrainableGliner, check_model_source, check_new_model, label_data_of,
    labels_by_corpus,
)


# Relex training: the gliner_ner recipe plus the relation losses' weights and pair sampling (the
# reference's span_loss_coef / adjacency_loss_coef / relation_loss_coef, rel_focal_loss_alpha/gamma).
DEFAULT_RELEX_TRAINING: Dict[str, Any] = {
    **DEFAULT_TRAINING,
    "span_loss_coef": 1.0,
    "adjacency_loss_coef": 1.0,
    "relation_loss_coef": 1.0,
    "relation_focal_alpha": None,  # None: focal_alpha
    "relation_focal_gamma": None,  # None: focal_gamma
    "pair_negative_ratio": [1.0, 10.0],  # negatives per gold pair, drawn uniformly per example
    "reversed_negatives": True,
}
RELEX_NEW_MODEL_KEYS = tuple(k for k in NEW_MODEL_KEYS if k not in ("label_encoder", "decoder", "decoder_loss_coef", "blank_entity_prob")) + ("relations_layer",)
DEFAULT_RELATIONS_LAYER = "mlp"

DEFAULT_RELEX_CONFIG: Dict[str, Any] = {
    "model": None,
    "new_model": None,
    "training": {},
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
    # Opt-in caps per window (null: none). Memory is bounded without them; a cap drops candidates,
    # with a warning.
    "max_pairs": None,
    "max_entities": None,
    "use_doc_ents": False,
    "backend": "torch",
    "onnx_quantize": None,
    "onnx_threads": None,
    "scorer": {"@scorers": "spacy_gliner.relex_scorer.v1"},
}

@Language.factory(
    "gliner_relex",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans", "doc._.gliner_relations"],
    default_config=DEFAULT_RELEX_CONFIG,
    default_score_weights={"ents_f": 0.5, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None,
                           "rel_f": 0.5, "rel_p": 0.0, "rel_r": 0.0},
)
def make_gliner_relex(
    nlp: Language,
    name: str,
    model: Optional[str],
    new_model: Optional[Dict[str, Any]],
    training: Dict[str, Any],
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
    max_pairs: Optional[int],
    max_entities: Optional[int],
    use_doc_ents: bool,
    backend: str,
    onnx_quantize: Optional[str],
    onnx_threads: Optional[int],
    scorer: Optional[Callable],
) -> "GlinerRelex":
    return GlinerRelex(
        nlp.vocab,
        name=name,
        model=model,
        new_model=new_model,
        training=training,
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
        max_entities=max_entities,
        use_doc_ents=use_doc_ents,
        backend=backend,
        onnx_quantize=onnx_quantize,
        onnx_threads=onnx_threads,
        scorer=scorer,
    )


def _probability(value, name: str, optional: bool) -> Optional[float]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"gliner_relex: {name!r} must be a number in [0, 1){' or null' if optional else ''}, got {value!r}.")
    return float(value)


def score_gliner_relex(examples: Iterable[Example], spans_key: str = "sc", **kwargs) -> Dict[str, Any]:
    """gliner_ner's entity scores plus strict relation scores ``rel_p/r/f`` and ``rel_per_type``: a
    relation counts when head span, tail span and label all match the gold relation of
    ``Example.reference`` (its ``doc._.gliner_relations`` store), spans aligned across tokenizations."""
    examples = list(examples)
    scores = score_gliner_ner(examples, spans_key=spans_key, **kwargs)
    scores.update(score_relations(examples))
    return scores


def score_relations(examples: Iterable[Example]) -> Dict[str, Any]:
    """``rel_p/r/f`` (strict) and ``rel_per_type`` from :func:`spacy_gliner.evaluation.evaluate_relations`."""
    from ..evaluation import evaluate_relations

    result = evaluate_relations(examples, modes=("strict",))
    strict = result["strict"]
    return {"rel_p": strict["p"], "rel_r": strict["r"], "rel_f": strict["f"], "rel_per_type": result["per_label"]}


@registry.scorers("spacy_gliner.relex_scorer.v1")
def make_relex_scorer() -> Callable:
    return score_gliner_relex


class GlinerRelex(TrainableGliner, GlinerPipe):
    """Entities like ``gliner_ner``, plus directed labelled relations between them."""

    def __init__(
        self,
        vocab,
        name: str = "gliner_relex",
        *,
        model: Optional[str] = None,
        new_model: Optional[Dict[str, Any]] = None,
        training: Optional[Dict[str, Any]] = None,
        labels: Union[List[str], Dict[str, str]] = (),
        relations: Union[List[str], Dict[str, str]] = (),
        threshold: float = 0.5,
        relation_threshold: Optional[float] = None,
        adjacency_threshold: Optional[float] = None,
        nested: bool = False,
        spans_key: str = "sc",
        overwrite_ents: bool = False,
        batch_size: int = 8,
        max_window_words: Optional[int] = None,
        window_overlap: Optional[int] = None,
        max_pairs: Optional[int] = None,
        max_entities: Optional[int] = None,
        use_doc_ents: bool = False,
        backend: str = "torch",
        onnx_quantize: Optional[str] = None,
        onnx_threads: Optional[int] = None,
        scorer: Optional[Callable] = score_gliner_relex,
    ):
        check_model_source("gliner_relex", model, new_model, "a relex checkpoint directory or a hub id",
                           "{'encoder': '<encoder dir>', 'relations_layer': 'mlp'}")
        # A training run (a new model, or a 'training' block to fine-tune) may take its labels from
        # the data at initialize; otherwise labels and relations are needed now.
        training_run = new_model is not None or bool(training)
        if not isinstance(spans_key, str) or not spans_key:
            raise ValueError("gliner_relex: 'spans_key' must be a non-empty string.")
        check_backend_settings(backend, onnx_quantize, onnx_threads, (None, "float32", False), "gliner_relex")
        if not labels and not use_doc_ents and not training_run:
            raise ValueError(
                "gliner_relex: no entity labels. Give them in the config, e.g. "
                "config={'labels': ['person', 'organisation'], 'relations': ['works for']}, or set "
                "use_doc_ents=True to take the entities already on the doc."
            )
        if not relations and not training_run:
            raise ValueError(NO_RELATIONS)
        self.vocab = vocab
        self.name = name
        self.source = str(model) if model is not None else None
        self.new_model = _check_relex_new_model(new_model, name) if new_model is not None else None
        self.training = check_training_settings(name, dict(training or {}), DEFAULT_RELEX_TRAINING)
        ratio = self.training["pair_negative_ratio"]
        if not (isinstance(ratio, (list, tuple)) and len(ratio) == 2 and 0 <= ratio[0] <= ratio[1]):
            raise ValueError(f"{name} 'training.pair_negative_ratio' must be [low, high] with 0 <= low <= high, got {ratio!r}.")
        self._label_names, self.label_texts = normalize_labels(labels, "gliner_relex 'labels'") if labels else ([], [])
        self._relation_names, self.relation_texts = (
            normalize_labels(relations, "gliner_relex 'relations'") if relations else ([], [])
        )
        _check_collisions(self._label_names, self.label_texts, self._relation_names, self.relation_texts)
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
            "max_pairs": optional_int(max_pairs, "gliner_relex 'max_pairs'", 1),
            "max_entities": optional_int(max_entities, "gliner_relex 'max_entities'", 1),
            "use_doc_ents": bool(use_doc_ents),
            "backend": backend,
            "onnx_quantize": onnx_quantize,
            "onnx_threads": onnx_threads,
        }
        self.scorer = scorer
        self._extractor = None
        self._trainer = None
        self._batches = None
        self.corpus_labels: Dict[str, List[str]] = {}
        self.relation_corpus_labels: Dict[str, List[str]] = {}
        self.model = None  # the torch network lives in the extractor; it trains with its own optimizer
        if self.source is not None:
            self._validate_local_checkpoint()

    def _validate_local_checkpoint(self) -> None:
        """Fail at ``add_pipe`` for a local checkpoint that is not relex or whose labels do not fit."""
        config = local_checkpoint_config(self.source)
        if config is None:
            return
        from ..modeling.checkpoint import check_checkpoint_label_lengths

        directory = Path(self.source).expanduser()
        if not config.relex:
            raise ValueError(
                f"gliner_relex: {directory} is not a relex checkpoint (no 'relations_layer' in gliner_config.json); "
                "use gliner_ner for it."
            )
        check_checkpoint_label_lengths(directory, self.label_texts + self.relation_texts)
        from ..modeling.label_checks import prompt_budget, relex_prompt_too_long
        from ..modeling.checkpoint import open_tokenizers
        from ..modeling.inputs import InputBuilder

        tokenizer, _ = open_tokenizers(directory, config)
        inputs = InputBuilder(tokenizer, config)
        length, limit = len(inputs.relex_prompt_ids(self.label_texts, self.relation_texts)), prompt_budget(inputs)
        if length > limit:
            raise ValueError(relex_prompt_too_long(len(self.label_texts), len(self.relation_texts), length, limit))

    @property
    def labels(self):
        return tuple(self._label_names)

    @property
    def relation_labels(self):
        return tuple(self._relation_names)

    @property
    def label_descriptions(self) -> Dict[str, str]:
        return dict(zip(self._label_names, self.label_texts))

    @property
    def relation_descriptions(self) -> Dict[str, str]:
        return dict(zip(self._relation_names, self.relation_texts))

    @property
    def label_data(self) -> Dict[str, Any]:
        """Entity and relation labels in the form ``initialize(labels=...)`` takes back (as the
        trainable lemmatizer's label data holds two parts), for ``spacy init labels``."""
        return {"labels": label_data_of(self._label_names, self.label_texts),
                "relations": label_data_of(self._relation_names, self.relation_texts)}

    # -- model ------------------------------------------------------------------------------
    def _load(self, source: Union[str, Path], onnx_dir: Optional[Path] = None) -> None:
        from ..inference.relations import RelationExtractor

        new_model = {"relations_layer": DEFAULT_RELATIONS_LAYER, **self.new_model} if source is None else None
        extractor = RelationExtractor(self._checkpoint_on_device(source, new_model), **self._window_settings())
        extractor.check_relex_labels(self.label_texts, self.relation_texts)
        self._use_backend(extractor, onnx_dir)
        self._extractor = extractor

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None,
                   labels=None, relations=None) -> None:
        """Load (or build) the model. Entity and relation labels come from
        ``[initialize.components.<name>]`` or the config, else from the gold data (entities of
        ``Example.reference``, relations of its ``doc._.gliner_relations`` store); the data also
        gives each corpus's label sets, from which training samples negative labels.

        ``labels`` may also be the component's ``label_data`` (``{"labels": ..., "relations": ...}``,
        what ``spacy init labels`` writes), which sets both."""
        if _is_label_data(labels):
            labels, relations = labels["labels"], labels["relations"] if relations is None else relations
        # A call that raises leaves the component as it was: labels are set first because reading
        # the gold data uses their descriptions, and put back if anything fails.
        before = (list(self._label_names), list(self.label_texts), list(self._relation_names), list(self.relation_texts),
                  dict(self.corpus_labels), dict(self.relation_corpus_labels))
        try:
            if labels is not None:
                self._label_names, self.label_texts = normalize_labels(labels, f"{self.name} initialize 'labels'")
            if relations is not None:
                self._relation_names, self.relation_texts = normalize_labels(relations, f"{self.name} initialize 'relations'")
            if get_examples is not None:
                texts, problems = self._read_training_texts(get_examples)
                if not self._label_names:
                    found = sorted({label for text in texts for _, _, label in text.spans})
                    self._label_names, self.label_texts = list(found), list(found)
                if not self._relation_names:
                    found = sorted({label for text in texts for _, _, label in text.relations})
                    self._relation_names, self.relation_texts = list(found), list(found)
                self.corpus_labels = labels_by_corpus(texts, lambda text: (label for _, _, label in text.spans))
                self.relation_corpus_labels = labels_by_corpus(texts, lambda text: (label for _, _, label in text.relations))
                width = self.extractor.config.max_width
                problems["gold spans wider than max_width (not learnable by a span model)"] += sum(
                    1 for text in texts for start, end, _ in text.spans if end - start > width
                )
                warn_counts(self.name, "training data", problems)
            if not self._relation_names:
                raise ValueError(NO_RELATIONS + " (none were found in the training data's doc._.gliner_relations either)")
            if not self._label_names and not self.cfg["use_doc_ents"]:
                raise ValueError(f"{self.name}: no entity labels in the config or the training data.")
            _check_collisions(self._label_names, self.label_texts, self._relation_names, self.relation_texts)
            self.extractor.check_relex_labels(self.label_texts, self.relation_texts)
        except BaseException:
            (self._label_names, self.label_texts, self._relation_names, self.relation_texts,
             self.corpus_labels, self.relation_corpus_labels) = before
            raise

    # -- training ---------------------------------------------------------------------------
    def _make_trainer(self):
        from ..training.relex_batches import RelexBatchBuilder
        from ..training.trainer import RelexLossSettings, RelexTrainer

        t = self.training
        extractor = self.extractor
        relex = RelexLossSettings(
            span_loss_coef=t["span_loss_coef"], adjacency_loss_coef=t["adjacency_loss_coef"],
            relation_loss_coef=t["relation_loss_coef"], relation_focal_alpha=t["relation_focal_alpha"],
            relation_focal_gamma=t["relation_focal_gamma"],
        )
        trainer = RelexTrainer(extractor.model, self._training_settings(), relex, extractor.rel_token_id)
        entity_texts = {c: [self._text_of(l) for l in labels] for c, labels in self.corpus_labels.items()}
        relation_texts = {c: [self._relation_text_of(l) for l in labels] for c, labels in self.relation_corpus_labels.items()}
        builder = RelexBatchBuilder(
            extractor.config, extractor.inputs, self._sampling_config(), entity_texts, relation_texts,
            seed=t["seed"], negative_ratio=tuple(t["pair_negative_ratio"]), reversed_negatives=t["reversed_negatives"],
        )
        return trainer, builder

    def _relation_text_of(self, label: str) -> str:
        return self.relation_descriptions.get(label, label)

    def _gold_text(self, example: Example, problems):
        """Gold entities (as gliner_ner reads them) plus gold relations from the reference's
        ``doc._.gliner_relations`` store (what the converters write), as indices into the spans."""
        text, index = self._gold_entities(example, problems)
        if text is None:
            return None
        for hs, he, ts, te, label, _ in _relations.get_relation_tuples(example.reference):
            head, tail = index.get((hs, he)), index.get((ts, te))
            if head is None or tail is None:
                problems["gold relations whose head or tail is not a gold entity"] += 1
                continue
            text.relations.append((head, tail, self._relation_text_of(label)))
        return text

    # -- inference ----------------------------------------------------------------------------
    def _settings(self):
        from ..inference.relations import RelexSettings

        return RelexSettings(
            threshold=self.cfg["threshold"],
            relation_threshold=self.cfg["relation_threshold"],
            adjacency_threshold=self.cfg["adjacency_threshold"],
            nested=self.cfg["nested"],
            max_pairs=self.cfg["max_pairs"],
            max_entities=self.cfg.get("max_entities"),
        )

    def predict(self, docs: Iterable[Doc]):
        if not self._relation_names:
            raise ValueError(NO_RELATIONS + "; or run nlp.initialize with training data that has relations.")
        if not self._label_names and not self.cfg["use_doc_ents"]:
            raise ValueError(f"{self.name}: no entity labels; give 'labels' or set use_doc_ents=True.")
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
            _, word_of = word_index(doc)
            doc_spans = [word_span(word_of, range(ent.start, ent.end)) for ent in doc.ents]
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
                    doc, result.entities, self._label_names, self.cfg["spans_key"], self.cfg["overwrite_ents"], self.name
                )
                relations = result.relations
            found = []
            for rel in relations:
                head, tail = doc_spans[rel.head], doc_spans[rel.tail]
                found.append((head.start, head.end, tail.start, tail.end, self._relation_names[rel.label], rel.score))
            _relations.set_relations(doc, found)

    # -- serialization: TrainableGliner.to_disk, with the relation labels saved beside the entity labels
    SAVED_ATTRIBUTES = {**TrainableGliner.SAVED_ATTRIBUTES, "relations": "_relation_names", "relation_texts": "relation_texts",
                        "relation_corpus_labels": "relation_corpus_labels"}


NO_RELATIONS = (
    "gliner_relex: no relation labels. Give them in the config, e.g. "
    "config={'labels': [...], 'relations': ['works for', 'located in']} "
    "(a list, or a dict relation -> description); use gliner_ner for entities only"
)


def _check_relex_new_model(spec: Dict[str, Any], name: str) -> Dict[str, Any]:
    if isinstance(spec, dict) and spec.get("label_encoder"):
        raise ValueError(f"{name} 'new_model': relex models are uni-encoder models; remove 'label_encoder'.")
    spec = check_new_model(spec, name, RELEX_NEW_MODEL_KEYS)
    if spec.get("span_mode") == "token_level":
        raise ValueError(
            f"{name} 'new_model': new relex models are span models; span_mode 'token_level' is not supported "
            "(token-level relex checkpoints run for inference only)."
        )
    return spec


def _is_label_data(labels) -> bool:
    """Whether ``labels`` is a relex ``label_data`` (two label sets), not a dict label -> description."""
    return (isinstance(labels, dict) and set(labels) == {"labels", "relations"}
            and not any(isinstance(value, str) for value in labels.values()))


def _prompt_labels(labels: Iterable[str]) -> List[str]:
    """A doc's distinct entity labels as the model reads them (``ORG`` -> ``organization``), sorted."""
    from ..training.label_names import normalize_label

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
