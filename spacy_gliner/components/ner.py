"""The ``gliner_ner`` component: zero-shot NER with any GLiNER checkpoint.

Torch and transformers are imported only when the model is first needed: spaCy imports every
installed factory module whenever it creates a ``Language``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Model

from .base import CHECKPOINT_DIR, ONNX_DIR, GlinerPipe, check_backend_settings, local_checkpoint_config
from ..training.settings import check_training_settings
from .annotations import doc_words, normalize_labels, optional_int, warn_counts, write_entities
from .listener import (
    ListenedBatch, ListenedDocs, check_listening_checkpoint, check_text_encoder, check_upstream, listened_vectors,
)
from .trainable import (
    DEFAULT_TRAINING, TrainableGliner, check_model_source, check_new_model, label_data_of, labels_by_corpus, saved_field,
)

LABEL_CACHE_DIR = "label_cache"

DEFAULT_NER_CONFIG: Dict[str, Any] = {
    "model": None,
    "new_model": None,
    # bi-encoders: a spacy-transformers.TransformerListener.v1 block, the shared `transformer`
    # component then runs the text tower (components/listener.py); None runs the checkpoint's own
    "text_encoder": None,
    "training": {},
    "labels": [],
    "threshold": 0.5,
    "nested": False,
    "multi_label": False,
    "lowercase_labels": False,
    "merge_adjacent": False,
    "spans_key": "sc",
    "overwrite_ents": False,
    "batch_size": 8,
    "max_window_words": None,
    "window_overlap": None,
    "label_cache_dtype": "float32",
    "label_top_k": None,
    "quantize": None,
    "precision": "float32",
    "compile": False,
    "backend": "torch",
    "onnx_quantize": None,
    "onnx_threads": None,
    "decoder_mode": None,
    "gen_constraints": None,
    "num_gen_sequences": 1,
    "max_generated_length": None,
    "scorer": {"@scorers": "spacy_gliner.ner_scorer.v1"},
}

# Generative-decoder checkpoints: where the decoder's label goes. "span" (the checkpoints' own
# decoder_mode): the span keeps its classified label, the generated ones are in the span group's
# attrs["generated_labels"]; "prompt": the best generated label becomes the span's label.
DECODER_MODES = ("span", "prompt")
GENERATED_LABELS_ATTR = "generated_labels"


@Language.factory(
    "gliner_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config=DEFAULT_NER_CONFIG,
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_gliner_ner(
    nlp: Language,
    name: str,
    model: Optional[str],
    new_model: Optional[Dict[str, Any]],
    text_encoder: Optional[Model],
    training: Dict[str, Any],
    labels: Union[List[str], Dict[str, str]],
    threshold: float,
    nested: bool,
    multi_label: bool,
    lowercase_labels: bool,
    merge_adjacent: bool,
    spans_key: str,
    overwrite_ents: bool,
    batch_size: int,
    max_window_words: Optional[int],
    window_overlap: Optional[int],
    label_cache_dtype: str,
    label_top_k: Optional[int],
    quantize: Optional[str],
    precision: str,
    compile: bool,
    backend: str,
    onnx_quantize: Optional[str],
    onnx_threads: Optional[int],
    decoder_mode: Optional[str],
    gen_constraints: Optional[List[str]],
    num_gen_sequences: int,
    max_generated_length: Optional[int],
    scorer: Optional[Callable],
) -> "GlinerNER":
    return GlinerNER(
        nlp.vocab,
        name=name,
        model=model,
        new_model=new_model,
        text_encoder=text_encoder,
        training=training,
        labels=labels,
        threshold=threshold,
        nested=nested,
        multi_label=multi_label,
        lowercase_labels=lowercase_labels,
        merge_adjacent=merge_adjacent,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        batch_size=batch_size,
        max_window_words=max_window_words,
        window_overlap=window_overlap,
        label_cache_dtype=label_cache_dtype,
        label_top_k=label_top_k,
        quantize=quantize,
        precision=precision,
        compile=compile,
        backend=backend,
        onnx_quantize=onnx_quantize,
        onnx_threads=onnx_threads,
        decoder_mode=decoder_mode,
        gen_constraints=gen_constraints,
        num_gen_sequences=num_gen_sequences,
        max_generated_length=max_generated_length,
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


def _check_decoder_settings(decoder_mode, gen_constraints, num_gen_sequences, max_generated_length) -> Dict[str, Any]:
    """The generative-decoder settings, checked at add_pipe (constraints are tokenised once the
    decoder tokenizer is at hand)."""
    from ..modeling.label_decoder import check_constraint_list, check_positive

    if decoder_mode is not None and decoder_mode not in DECODER_MODES:
        raise ValueError(f"gliner_ner: 'decoder_mode' must be one of {DECODER_MODES} or null (the checkpoint's), got {decoder_mode!r}.")
    if gen_constraints is not None:
        gen_constraints = check_constraint_list(gen_constraints, "gliner_ner: 'gen_constraints'")
    check_positive(num_gen_sequences, "gliner_ner: 'num_gen_sequences'")
    return {
        "decoder_mode": decoder_mode,
        "gen_constraints": gen_constraints,
        "num_gen_sequences": num_gen_sequences,
        "max_generated_length": optional_int(max_generated_length, "gliner_ner 'max_generated_length'", 1),
    }


class GlinerNER(TrainableGliner, GlinerPipe):
    """Zero-shot NER: every decoded span in ``doc.spans[spans_key]``, the best of them in ``doc.ents``."""

    def __init__(
        self,
        vocab,
        name: str = "gliner_ner",
        *,
        model: Optional[str] = None,
        new_model: Optional[Dict[str, Any]] = None,
        text_encoder: Optional[Model] = None,
        training: Optional[Dict[str, Any]] = None,
        labels: Union[List[str], Dict[str, str]] = (),
        threshold: float = 0.5,
        nested: bool = False,
        multi_label: bool = False,
        lowercase_labels: bool = False,
        merge_adjacent: bool = False,
        spans_key: str = "sc",
        overwrite_ents: bool = False,
        batch_size: int = 8,
        max_window_words: Optional[int] = None,
        window_overlap: Optional[int] = None,
        label_cache_dtype: str = "float32",
        label_top_k: Optional[int] = None,
        quantize: Optional[str] = None,
        precision: str = "float32",
        compile: bool = False,
        backend: str = "torch",
        onnx_quantize: Optional[str] = None,
        onnx_threads: Optional[int] = None,
        decoder_mode: Optional[str] = None,
        gen_constraints: Optional[List[str]] = None,
        num_gen_sequences: int = 1,
        max_generated_length: Optional[int] = None,
        scorer: Optional[Callable] = score_gliner_ner,
    ):
        check_model_source("gliner_ner", model, new_model, "a checkpoint directory or a hub id, e.g. 'urchade/gliner_small-v2.1'",
                           "{'encoder': '<encoder dir>'}")
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"gliner_ner: 'threshold' must be a number in [0, 1), got {threshold!r}.")
        if not isinstance(spans_key, str) or not spans_key:
            raise ValueError("gliner_ner: 'spans_key' must be a non-empty string.")
        from ..modeling.acceleration import check_acceleration  # torch is imported by thinc already

        check_acceleration(quantize, precision, compile, "gliner_ner")
        check_backend_settings(backend, onnx_quantize, onnx_threads, (quantize, precision, compile), "gliner_ner")
        if label_cache_dtype not in ("float32", "float16"):
            raise ValueError(f"gliner_ner: 'label_cache_dtype' must be 'float32' or 'float16', got {label_cache_dtype!r}.")
        self.vocab = vocab
        self.name = name
        self.source = str(model) if model is not None else None
        self.new_model = check_new_model(new_model, "gliner_ner") if new_model is not None else None
        self.training = check_training_settings("gliner_ner", training or {}, DEFAULT_TRAINING)
        self.cfg: Dict[str, Any] = {
            "threshold": float(threshold),
            "nested": bool(nested),
            "multi_label": bool(multi_label),
            "lowercase_labels": bool(lowercase_labels),
            "merge_adjacent": bool(merge_adjacent),
            "spans_key": spans_key,
            "overwrite_ents": bool(overwrite_ents),
            "batch_size": optional_int(batch_size, "gliner_ner 'batch_size'", 1),
            "max_window_words": optional_int(max_window_words, "gliner_ner 'max_window_words'", 2),
            "window_overlap": optional_int(window_overlap, "gliner_ner 'window_overlap'", 0),
            "label_cache_dtype": label_cache_dtype,
            "label_top_k": optional_int(label_top_k, "gliner_ner 'label_top_k'", 1),
            "quantize": quantize,
            "precision": precision,
            "compile": compile,
            "backend": backend,
            "onnx_quantize": onnx_quantize,
            "onnx_threads": onnx_threads,
            **_check_decoder_settings(decoder_mode, gen_constraints, num_gen_sequences, max_generated_length),
        }
        self.scorer = scorer
        self._label_names, self.label_texts = self._normalize_labels(labels, "gliner_ner 'labels'") if labels else ([], [])
        self._extractor = None
        self._trainer = None
        self._batches = None
        self.corpus_labels: Dict[str, List[str]] = {}
        # The torch network lives in the extractor and trains with its own optimizer. thinc's slot
        # holds only a text_encoder listener, where spaCy's transformer component finds it.
        self.model = check_text_encoder(text_encoder, name) if text_encoder is not None else None
        if self.model is not None and backend == "onnx":
            raise ValueError(
                f"{name}: 'backend': 'onnx' exports the component's own encoders, but with 'text_encoder' the text "
                "tower runs in the shared spaCy transformer (torch). Remove 'text_encoder' to serve the whole "
                "model from ONNX Runtime, or keep the listener with 'backend': 'torch'."
            )
        if self.source is not None:
            self._validate_local_checkpoint()

    def _validate_local_checkpoint(self) -> None:
        """Fail at ``add_pipe`` for what can be checked cheaply: files present, labels that fit.

        Only for a local directory that exists: a pipeline being loaded with ``spacy.load`` is
        built from its config first, when the original checkpoint path may be long gone.
        """
        config = local_checkpoint_config(self.source)
        if config is None:
            return
        from ..modeling.checkpoint import check_checkpoint_label_lengths

        if self.cfg.get("label_top_k") is not None and config.bi_encoder and config.post_fusion_schema:
            raise ValueError(
                f"{self.name}: 'label_top_k' (label retrieval) cannot be used with {self.source!r}: its post-fusion "
                "layers make every label vector depend on the window's text and on the other labels, so labels "
                "cannot be ranked or scored apart from the full label set. Leave 'label_top_k' unset."
            )
        if self.label_texts:
            check_checkpoint_label_lengths(Path(self.source).expanduser(), self.label_texts)
        if self.listens:
            self._check_listening(config)
        if config.has_label_decoder:
            from ..modeling.checkpoint import open_decoder_tokenizer
            from ..modeling.label_decoder import DEFAULT_MAX_GENERATED_TOKENS, check_room, constraint_trie, hf_decoder_config

            decoder_config = hf_decoder_config(config.labels_decoder_config)
            max_length = self.cfg.get("max_generated_length")
            check_room(getattr(decoder_config, "max_position_embeddings", None),
                       DEFAULT_MAX_GENERATED_TOKENS if max_length is None else max_length)
            if self.cfg["gen_constraints"] is not None:
                directory = Path(self.source).expanduser()
                constraint_trie(open_decoder_tokenizer(directory, config), self.cfg["gen_constraints"], decoder_config.vocab_size)
        else:
            self._refuse_decoder_settings()

    def _refuse_decoder_settings(self) -> None:
        """Decoder settings on a checkpoint without a decoder would silently do nothing."""
        given = [key for key in ("decoder_mode", "gen_constraints", "max_generated_length") if self.cfg.get(key) is not None]
        if self.cfg.get("num_gen_sequences", 1) != 1:
            given.append("num_gen_sequences")
        if given:
            raise ValueError(
                f"{self.name}: {', '.join(given)} only apply to checkpoints with a generative label decoder "
                f"('labels_decoder' in gliner_config.json); {self.source!r} has none. Remove these settings."
            )

    def _check_listening(self, config) -> None:
        check_listening_checkpoint(self.model, config, self.name, self.source)

    def _normalize_labels(self, labels, where: str):
        """Label names and the texts the model reads; lower-cased texts when ``lowercase_labels``
        is set (NuNER Zero was trained on lower-case labels, and its model card says to pass them so)."""
        names, texts = normalize_labels(labels, where)
        if self.cfg.get("lowercase_labels"):
            texts = [text.lower() for text in texts]
        return names, texts

    @property
    def labels(self):
        """Label names as they appear on spans, in prompt order."""
        return tuple(self._label_names)

    @property
    def label_descriptions(self) -> Dict[str, str]:
        """What the model reads for each label."""
        return dict(zip(self._label_names, self.label_texts))

    @property
    def label_data(self):
        """The labels as ``initialize(labels=...)`` takes them (``spacy init labels`` writes them)."""
        return label_data_of(self._label_names, self.label_texts)

    # -- model ------------------------------------------------------------------------------
    def _load(self, source: Union[str, Path], label_cache: Optional[Path] = None, onnx_dir: Optional[Path] = None) -> None:
        from ..inference.entities import EntityExtractor

        extractor = EntityExtractor(
            self._checkpoint_on_device(source, self.new_model, text_tower=not self.listens),
            **self._window_settings(),
            label_cache_dtype=self.cfg["label_cache_dtype"],
            label_top_k=self.cfg.get("label_top_k"),
        )
        if label_cache is None:  # a saved pipeline's labels were checked when they were added
            extractor.check_labels(self.label_texts)
        if self.listens:
            self._check_listening(extractor.config)
        if extractor.generation is not None:
            extractor.set_generation(
                self.cfg.get("num_gen_sequences", 1), self.cfg.get("gen_constraints"), self.cfg.get("max_generated_length")
            )
        else:
            self._refuse_decoder_settings()
        extractor.accelerate(self.cfg.get("quantize"), self.cfg.get("precision", "float32"), self.cfg.get("compile", False), self.name)
        self._use_backend(extractor, onnx_dir)
        if label_cache is not None and extractor.label_cache is not None:
            extractor.label_cache.from_disk(label_cache)
        self._extractor = extractor

    def initialize(self, get_examples: Optional[Callable] = None, *, nlp: Optional[Language] = None, labels=None) -> None:
        """Load (or build) the model. Labels come from ``[initialize.components.<name>]`` or, when
        not given, from the gold data; the data also gives each corpus's label set, from which
        training samples negative labels."""
        # A call that raises leaves the component as it was: labels are set first because reading
        # the gold data uses their descriptions, and put back if anything fails.
        before = (list(self._label_names), list(self.label_texts), dict(self.corpus_labels))
        try:
            if labels is not None:
                self._label_names, self.label_texts = self._normalize_labels(labels, f"{self.name} initialize 'labels'")
            if get_examples is not None:
                texts, problems = self._read_training_texts(get_examples)
                found = sorted({label for text in texts for _, _, label in text.spans})
                if not self._label_names:
                    self._label_names, self.label_texts = self._normalize_labels(found, f"{self.name} training labels")
                self.corpus_labels = labels_by_corpus(texts, lambda text: (label for _, _, label in text.spans))
                width = self.extractor.config.max_width if self.extractor.config.is_span_model else None
                if width:
                    problems["gold spans wider than max_width (not learnable by a span model)"] += sum(
                        1 for text in texts for start, end, _ in text.spans if end - start > width
                    )
                warn_counts(self.name, "training data", problems)
            self._require_labels()
            self.extractor.check_labels(self.label_texts)
            if self.listens and nlp is not None:
                check_upstream(nlp, self.name, self.model, self.extractor.model.text_width)
            if self.extractor.label_cache is not None:
                self.extractor.prepare_label_vectors(self.label_texts)
        except BaseException:
            (self._label_names, self.label_texts, self.corpus_labels) = before
            raise

    # -- training ---------------------------------------------------------------------------
    def _after_update(self) -> None:
        super()._after_update()
        if self.extractor.label_cache is not None:
            self.extractor.label_cache.clear()  # the label encoder changed

    def _label_vectors_fn(self, batch):
        if not self.extractor.config.bi_encoder:
            return None
        model, inputs = self.extractor.model, self.extractor.inputs
        labels = batch.sample.labels[0]

        def vectors():
            ids, mask = inputs.tokenize_labels(labels)
            return model.label_vectors(ids.to(model.device), mask.to(model.device))

        return vectors

    def _make_trainer(self):
        from ..training.batches import BatchBuilder
        from ..training.trainer import Trainer

        if self.cfg.get("quantize") or self.cfg.get("compile"):
            raise ValueError(
                f"{self.name}: 'quantize' and 'compile' are for inference; train with them off and set them "
                "in the config of the trained pipeline."
            )
        trainer = Trainer(self.extractor.model, self._training_settings())
        corpus_labels = {c: [self._text_of(l) for l in labels] for c, labels in self.corpus_labels.items()}
        builder = BatchBuilder(self.extractor.config, self.extractor.inputs, self._sampling_config(), corpus_labels,
                               seed=self.training["seed"], decoder_tokenizer=self.extractor.checkpoint.decoder_tokenizer)
        return trainer, builder

    def add_label(self, label: str, description: Optional[str] = None) -> int:
        return self.add_labels({label: description or label}, progress=False)

    def add_labels(self, labels: Union[List[str], Dict[str, str]], progress: bool = True) -> int:
        """Add many labels at once (a list, or label -> description); returns how many were new.

        The way in for very large label sets: labels added here are saved with the component by
        ``to_disk``, not written into ``config.cfg`` (spaCy parses and validates every config
        value at ``spacy.load``: a million labels there take minutes). They are checked in batches,
        and bi-encoder vectors computed for the new ones (progress bar), once the model is loaded.
        """
        names, texts = self._normalize_labels(labels, f"{self.name}.add_labels")
        known = set(self._label_names)
        fresh = [i for i, name in enumerate(names) if name not in known]
        if not fresh:
            return 0
        names, texts = [names[i] for i in fresh], [texts[i] for i in fresh]
        if self._extractor is not None:
            self._extractor.check_labels(texts)
            if self._extractor.label_cache is not None:
                self._extractor.prepare_label_vectors(texts, progress=progress)
        elif self.source is not None and Path(self.source).expanduser().is_dir():
            from ..modeling.checkpoint import check_checkpoint_label_lengths

            check_checkpoint_label_lengths(Path(self.source).expanduser(), texts)
        self._label_names.extend(names)
        self.label_texts.extend(texts)
        return len(names)

    def _require_labels(self) -> None:
        if not self._label_names:
            raise ValueError(
                f"{self.name}: no labels. Give them in the config (config={{'labels': ['person', ...]}}), "
                "with add_label, or in [initialize.components] for training."
            )

    # -- inference ----------------------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]):
        from ..inference.entities import DecodeSettings

        docs = list(docs)
        self._require_labels()
        read = [doc_words(doc) for doc in docs]
        settings = DecodeSettings(self.cfg["threshold"], self.cfg["nested"], self.cfg["multi_label"], self.cfg.get("merge_adjacent", False))
        words = [w for w, _ in read]
        if not self.listens:
            return self.extractor.extract(words, self.label_texts, settings)
        return self.extractor.extract(words, self.label_texts, settings, self._listened_vectors(docs, [ids for _, ids in read]))

    def _listened_vectors(self, docs: List[Doc], token_ids):
        """Word vectors of ``docs`` from the shared transformer's output on them (no gradient)."""
        return listened_vectors(self.model, docs, token_ids, self.name, self.extractor.model.text_width,
                                self.extractor.model.device)

    # -- training with a shared transformer -----------------------------------------------------
    def _training_batch(self, examples: Iterable[Example], for_update: bool = True):
        """Listening: the batch's word vectors are rows copied from the listener's per-doc vectors,
        which send their gradients back to the transformer (:class:`listener.ListenedBatch`)."""
        if not self.listens:
            return super()._training_batch(examples, for_update)
        import sys
        from collections import Counter

        import torch

        from ..training.batches import split_long_texts

        examples = list(examples)
        docs = [eg.predicted for eg in examples]
        self._get_trainer()
        extractor = self.extractor
        listened = ListenedDocs.of(self.model, docs, [doc_words(doc)[1] for doc in docs], self.name,
                                   extractor.model.device, for_update)
        texts = []
        for index, example in enumerate(examples):
            text = self._gold_text(example, Counter())
            if text is not None:
                text.origin = (index, 0)
                texts.append(text)
        # the transformer read the subwords: only the model's word limit cuts texts here
        texts, _ = split_long_texts(texts, extractor.inputs, extractor.max_window_words, extractor.window_overlap, sys.maxsize)
        batch = self._batches.build(texts) if texts else None
        if batch is None or not batch.sample.num_labels:
            listened.send_gradient()  # nothing to learn, but the transformer waits for its listeners
            return None
        width = int(batch.encoded.num_words.max())
        rows = torch.zeros((len(texts), width, extractor.model.text_width), device=extractor.model.device)
        for row, text in enumerate(texts):
            doc_index, first = text.origin
            rows[row, : len(text.words)] = listened.vectors[doc_index][first : first + len(text.words)]
        batch.word_vectors = rows  # gradients reach listened.vectors through the copies
        return ListenedBatch(batch, listened)

    def _train_step(self, batch) -> float:
        if not isinstance(batch, ListenedBatch):
            return super()._train_step(batch)
        loss = super()._train_step(batch.batch)
        batch.send_gradient()
        return loss

    def _batch_loss(self, batch):
        return super()._batch_loss(batch.batch if isinstance(batch, ListenedBatch) else batch)

    def set_annotations(self, docs: Iterable[Doc], decoded) -> None:
        generative = self.extractor.generation is not None
        prompt_mode = generative and self.cfg.get("decoder_mode") == "prompt"
        names = self._label_names

        def generated_label(span) -> str:
            """Prompt mode: the decoder's best label, or the classified one when it wrote nothing."""
            written = span.generated[0].strip() if span.generated else ""
            return written or names[span.label]

        for doc, spans in zip(docs, decoded):
            aligned = None
            if generative:
                aligned = {GENERATED_LABELS_ATTR: [[text.strip() for text in span.generated or ()] for span in spans]}
            write_entities(doc, spans, names, self.cfg["spans_key"], self.cfg["overwrite_ents"], self.name,
                           label_of=generated_label if prompt_mode else None, aligned=aligned)

    # -- serialization (fields: TrainableGliner.to_disk) -----------------------------------------
    def _more_writers(self) -> Dict[str, Any]:
        """``label_cache``: the bi-encoder label vectors (none for other models), and the shared fields."""
        return {LABEL_CACHE_DIR: self._write_label_cache, **super()._more_writers()}

    def _write_label_cache(self, path: Path) -> None:
        extractor = self.extractor
        if extractor.label_cache is not None:
            extractor.prepare_label_vectors(self.label_texts, progress=False)
            extractor.label_cache.to_disk(path)

    def _load_saved(self, found: Dict[str, Path]) -> None:
        """The label cache belongs to the saved checkpoint's label encoder: read with it, or not at all."""
        self._load(found[CHECKPOINT_DIR], saved_field(found, LABEL_CACHE_DIR), onnx_dir=saved_field(found, ONNX_DIR))

    def _detach_from_directory(self) -> None:
        super()._detach_from_directory()
        if self._extractor.label_cache is not None:
            self._extractor.label_cache.load_into_memory()
