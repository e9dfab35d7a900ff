"""What a GLiNER checkpoint's ``gliner_config.json`` says, validated.

The reference package accepts many experimental options. We support the families that are
published on the hub and refuse everything else by name, so that a checkpoint is never run
with a silently different architecture.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

SPAN_MODES = ("markerV0", "marker")
TOKEN_MODE = "token_level"
SUBTOKEN_POOLING = ("first", "last", "mean", "max")

# The token-level decoder model always represents spans (the reference hardcodes it); elsewhere
# the option is refused.
_SPAN_REPRESENTATIONS = (
    "token-level GLiNER with span representations (represent_spans) but no label decoder",
    "an experimental option of the reference with no published checkpoint; only the token-level "
    "decoder model (UniEncoderTokenDecoder) uses it",
)
# Options whose non-default value makes a family we do not run: option -> (family, why it is refused).
_UNSUPPORTED_IF_SET = {
    "span_encoder_config": (
        "GLiNER with a span context encoder",
        "an experimental layer of the reference with no published checkpoint",
    ),
    "decoder_config": (
        "streaming GLiNER on a causal decoder backbone (StreamingSpan)",
        "its cached, session-based inference is not implemented",
    ),
}
_UNSUPPORTED_IF_TRUE = {
    "fuse_layers": ("GLiNER with fused encoder layers", "an experimental option with no published checkpoint"),
    "precomputed_prompts_mode": ("GLiNER with precomputed prompt embeddings", "a training-time option of the reference"),
}
_UNSUPPORTED_MODEL_TYPES = {
    "gliner_streaming_span": _UNSUPPORTED_IF_SET["decoder_config"],
}


def _refusal(source: str, what: str, family_and_reason) -> "UnsupportedCheckpointError":
    family, reason = family_and_reason
    return UnsupportedCheckpointError(
        f"{source}: {what}: this is a {family}, which spacy-gliner does not run ({reason}). Supported: "
        "uni- and bi-encoder span and token NER (post-fusion included), the span NER model with a generative "
        "label decoder (UniEncoderSpanDecoder) and its token form (UniEncoderTokenDecoder), span and token relex (every "
        "relations_layer and triples_layer the reference builds); see the README's checkpoint families."
    )


class UnsupportedCheckpointError(ValueError):
    """The checkpoint uses an option this package does not implement."""


@dataclass
class GlinerConfig:
    """The architecture of one GLiNER checkpoint.

    ``raw`` keeps the original dictionary so that saving writes back exactly what was read
    (plus what training changed), keeping our checkpoints loadable by the reference package.
    """

    family: str  # "span" or "token"
    bi_encoder: bool
    relex: bool
    hidden_size: int
    max_width: int
    max_len: int
    span_mode: str
    num_rnn_layers: int
    dropout: float
    subtoken_pooling: str
    embed_ent_token: bool
    class_token_index: int
    ent_token: str
    sep_token: str
    encoder_config: Optional[Dict[str, Any]]
    labels_encoder_config: Optional[Dict[str, Any]]
    model_name: str
    labels_encoder_name: Optional[str]
    vocab_size: int
    rel_token: str = "<<REL>>"
    rel_token_index: int = -1
    embed_rel_token: bool = True
    relations_layer: Optional[str] = None
    post_fusion_schema: str = ""  # e.g. "l2l-l2t-t2t"; empty: no post-fusion layers
    num_post_fusion_layers: int = 1
    # generative label decoder (UniEncoderSpanDecoder): the GPT-2-style model that writes a label
    # for each selected span, its Hugging Face config, and how its prefix is built
    labels_decoder: Optional[str] = None
    labels_decoder_config: Optional[Dict[str, Any]] = None
    full_decoder_context: bool = True  # the span's own decoder tokens follow its vector
    decoder_loss_coef: float = 0.5
    span_loss_coef: float = 1.0
    token_loss_coef: float = 1.0  # token-level decoder models: the token loss beside the span loss
    neg_spans_ratio: float = 1.0  # token-level decoder models: random spans per gold span in training
    blank_entity_prob: float = 0.1  # training batches prompted with the single type "entity"
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_span_model(self) -> bool:
        return self.family == "span"

    @property
    def has_label_decoder(self) -> bool:
        return bool(self.labels_decoder)

    @property
    def is_token_decoder(self) -> bool:
        """The token-level decoder model (UniEncoderTokenDecoder): token scores find spans, a
        span layer scores them against the labels, and the decoder names those it keeps."""
        return self.has_label_decoder and not self.is_span_model

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "gliner_config.json") -> "GlinerConfig":
        data = dict(data)
        for key, family in _UNSUPPORTED_IF_SET.items():
            if data.get(key):
                raise _refusal(source, f"'{key}' is set", family)
        for key, family in _UNSUPPORTED_IF_TRUE.items():
            if data.get(key):
                raise _refusal(source, f"'{key}' is true", family)
        if data.get("model_type") in _UNSUPPORTED_MODEL_TYPES:
            raise _refusal(source, f"model_type is {data['model_type']!r}", _UNSUPPORTED_MODEL_TYPES[data["model_type"]])
        model_type = data.get("model_type") or ""
        if model_type and model_type not in _KNOWN_MODEL_TYPES:
            raise UnsupportedCheckpointError(
                f"{source}: model_type {model_type!r} is not supported; supported: "
                f"{', '.join(sorted(_KNOWN_MODEL_TYPES))}."
            )
        span_mode = data.get("span_mode", "markerV0")
        if span_mode in ("token-level", TOKEN_MODE) or model_type.endswith("_token") or "token_" in model_type:
            span_mode = TOKEN_MODE
        if span_mode != TOKEN_MODE and span_mode not in SPAN_MODES:
            raise UnsupportedCheckpointError(
                f"{source}: span_mode {span_mode!r} is not supported; supported: "
                f"{', '.join(SPAN_MODES + (TOKEN_MODE,))}."
            )
        pooling = data.get("subtoken_pooling", "first")
        if pooling not in SUBTOKEN_POOLING:
            raise UnsupportedCheckpointError(
                f"{source}: subtoken_pooling {pooling!r} is not supported; supported: {', '.join(SUBTOKEN_POOLING)}."
            )
        bi_encoder = bool(data.get("labels_encoder")) or model_type.startswith("gliner_bi_encoder")
        relex = data.get("relations_layer") is not None or "relex" in model_type
        if relex and bi_encoder:
            # gliner 0.2.29 has no bi-encoder relex model either: with 'relations_layer' set it builds
            # a uni-encoder relex model and never uses the labels encoder.
            raise UnsupportedCheckpointError(
                f"{source}: bi-encoder relex checkpoints ('labels_encoder' with 'relations_layer') are not "
                "supported; the reference gliner has no bi-encoder relex family. Supported relex families: "
                "uni-encoder span relex (gliner_uni_encoder_span_relex) and uni-encoder token-level relex "
                "(gliner_uni_encoder_token_relex)."
            )
        if data.get("labels_decoder"):
            _check_label_decoder(data, bi_encoder, relex, source)
        elif data.get("represent_spans"):
            raise _refusal(source, "'represent_spans' is true", _SPAN_REPRESENTATIONS)
        hidden_size = int(data.get("hidden_size", 512))
        if relex and data.get("triples_layer") is not None:
            _check_triples_layer(data["triples_layer"], hidden_size, source)
        fusion_schema = data.get("post_fusion_schema") or ""
        if fusion_schema:
            from .fusion import check_fusion_schema

            try:
                check_fusion_schema(fusion_schema, int(data.get("num_post_fusion_layers", 1)), hidden_size)
            except ValueError as error:
                raise UnsupportedCheckpointError(f"{source}: {error}") from None
        return cls(
            family="token" if span_mode == TOKEN_MODE else "span",
            bi_encoder=bi_encoder,
            relex=relex,
            hidden_size=hidden_size,
            max_width=int(data.get("max_width", 12)),
            max_len=int(data.get("max_len", 384)),
            span_mode=span_mode,
            num_rnn_layers=int(data.get("num_rnn_layers", 1) or 0),
            dropout=float(data.get("dropout", 0.4)),
            subtoken_pooling=pooling,
            embed_ent_token=bool(data.get("embed_ent_token", True)),
            class_token_index=int(data.get("class_token_index", -1)),
            ent_token=data.get("ent_token", "<<ENT>>"),
            sep_token=data.get("sep_token", "<<SEP>>"),
            encoder_config=data.get("encoder_config"),
            labels_encoder_config=data.get("labels_encoder_config"),
            model_name=data.get("model_name", ""),
            labels_encoder_name=data.get("labels_encoder"),
            vocab_size=int(data.get("vocab_size", -1)),
            rel_token=data.get("rel_token", "<<REL>>"),
            rel_token_index=int(data.get("rel_token_index", -1)),
            embed_rel_token=bool(data.get("embed_rel_token", True)),
            relations_layer=data.get("relations_layer"),
            post_fusion_schema=fusion_schema,
            num_post_fusion_layers=int(data.get("num_post_fusion_layers", 1)),
            labels_decoder=data.get("labels_decoder") or None,
            labels_decoder_config=data.get("labels_decoder_config"),
            full_decoder_context=bool(data.get("full_decoder_context", True)),
            decoder_loss_coef=float(data.get("decoder_loss_coef", 0.5)),
            span_loss_coef=float(data.get("span_loss_coef", 1.0)),
            token_loss_coef=float(data.get("token_loss_coef", 1.0)),
            neg_spans_ratio=float(data.get("neg_spans_ratio", 1.0)),
            blank_entity_prob=float(data.get("blank_entity_prob", 0.1)),
            raw=data,
        )

    def to_dict(self) -> Dict[str, Any]:
        data = dict(self.raw)
        data.update(
            hidden_size=self.hidden_size,
            max_width=self.max_width,
            max_len=self.max_len,
            span_mode=self.span_mode,
            num_rnn_layers=self.num_rnn_layers,
            dropout=self.dropout,
            subtoken_pooling=self.subtoken_pooling,
            embed_ent_token=self.embed_ent_token,
            class_token_index=self.class_token_index,
            ent_token=self.ent_token,
            sep_token=self.sep_token,
            encoder_config=self.encoder_config,
            labels_encoder_config=self.labels_encoder_config,
            model_name=self.model_name,
            labels_encoder=self.labels_encoder_name,
            vocab_size=self.vocab_size,
        )
        if self.relex:
            data.update(
                rel_token=self.rel_token,
                rel_token_index=self.rel_token_index,
                embed_rel_token=self.embed_rel_token,
                relations_layer=self.relations_layer,
            )
        if self.has_label_decoder:
            data.update(
                labels_decoder=self.labels_decoder,
                labels_decoder_config=self.labels_decoder_config,
                decoder_mode=LABEL_DECODER_MODE,
                full_decoder_context=self.full_decoder_context,
                decoder_loss_coef=self.decoder_loss_coef,
                span_loss_coef=self.span_loss_coef,
                blank_entity_prob=self.blank_entity_prob,
            )
            if self.is_token_decoder:
                data.update(token_loss_coef=self.token_loss_coef, neg_spans_ratio=self.neg_spans_ratio, represent_spans=True)
        if self.post_fusion_schema:
            data.update(post_fusion_schema=self.post_fusion_schema, num_post_fusion_layers=self.num_post_fusion_layers)
        return data


# The one decoder_mode the reference (gliner 0.2.29) can run: the decoder reads each selected span.
LABEL_DECODER_MODE = "span"


def _check_label_decoder(data: Dict[str, Any], bi_encoder: bool, relex: bool, source: str) -> None:
    """Refuse, by name, the generative-decoder variants that cannot run."""
    if bi_encoder or relex:
        raise UnsupportedCheckpointError(
            f"{source}: 'labels_decoder' is combined with {'labels_encoder' if bi_encoder else 'relations_layer'}; "
            "the reference gliner builds the generative decoder only on a uni-encoder span or token NER model."
        )
    mode = data.get("decoder_mode")
    if mode != LABEL_DECODER_MODE:
        why = (
            "its inference fails in the reference gliner 0.2.29 too (the label prompts are never given to "
            "the decoder in a shape it can generate from)" if mode == "prompt"
            else "the reference then generates labels it never attaches to a span"
        )
        raise UnsupportedCheckpointError(
            f"{source}: decoder_mode is {mode!r}; generative-decoder checkpoints run with decoder_mode "
            f"'{LABEL_DECODER_MODE}' only ({why}). Set decoder_mode to '{LABEL_DECODER_MODE}' and fine-tune."
        )
    if not isinstance(data.get("labels_decoder_config"), dict):
        raise UnsupportedCheckpointError(
            f"{source}: 'labels_decoder' is set but 'labels_decoder_config' (the decoder's Hugging Face "
            "config, which gliner 0.2.x saves) is missing; re-save the checkpoint with gliner 0.2.x."
        )


# Triple modes whose parameters the reference sizes for 768 whatever ``hidden_size`` is
# (``TriplesScoreLayer(triples_layer)`` is built without a dimension): with another hidden size
# their first layer cannot read the relation vectors, in the reference as here.
_TRIPLES_SIZED_768 = ("TransH", "TransF", "PairRE", "TripleRE", "TuckER", "ERMLP", "ConvKB")
# Modes that split vectors into equal parts (complex halves, quaternion quarters).
_TRIPLES_PARTS = {"ComplEx": 2, "SimplE": 2, "QuatE": 4}


def _check_triples_layer(mode: Any, hidden_size: int, source: str) -> None:
    """Refuse, by name, triple modes that cannot run: unknown ones, ConvE (the reference cannot
    build it from a config either) and dimension mismatches that crash the reference too."""
    from .relations.triples import REFERENCE_TRIPLES_DIM, SUPPORTED_TRIPLES_LAYERS

    if mode == "ConvE":
        raise UnsupportedCheckpointError(
            f"{source}: triples_layer 'ConvE' cannot run: the reference gliner package cannot build it "
            "from a config either (it needs 'emb_dim1', which the model never passes)."
        )
    if mode not in SUPPORTED_TRIPLES_LAYERS:
        raise UnsupportedCheckpointError(
            f"{source}: triples_layer {mode!r} is not supported (the value is case-sensitive); supported: "
            f"{', '.join(SUPPORTED_TRIPLES_LAYERS)}."
        )
    if mode in _TRIPLES_SIZED_768 and hidden_size != REFERENCE_TRIPLES_DIM:
        raise UnsupportedCheckpointError(
            f"{source}: triples_layer {mode!r} has parameters sized for {REFERENCE_TRIPLES_DIM} (the reference "
            f"builds them for {REFERENCE_TRIPLES_DIM} whatever hidden_size is) but hidden_size is {hidden_size}; "
            "this checkpoint cannot run in the reference gliner package either."
        )
    parts = _TRIPLES_PARTS.get(mode)
    if parts and hidden_size % parts:
        raise UnsupportedCheckpointError(
            f"{source}: triples_layer {mode!r} splits vectors into {parts} equal parts, but hidden_size "
            f"{hidden_size} is not divisible by {parts}; this checkpoint cannot run in the reference either."
        )


_KNOWN_MODEL_TYPES = {
    "gliner_uni_encoder_span",
    "gliner_uni_encoder_token",
    "gliner_bi_encoder_span",
    "gliner_bi_encoder_token",
    "gliner_bi_encoder",
    "gliner_uni_encoder",
    "gliner_uni_encoder_span_relex",
    "gliner_uni_encoder_token_relex",
    "gliner_uni_encoder_span_decoder",
    "gliner_encoder_token_decoder",
    "gliner",
}
