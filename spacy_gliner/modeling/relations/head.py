"""The relation head of relex checkpoints: adjacency, pairing and relation scoring on top of the
shared span model, and the relation forward training and inference both call."""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional, Tuple

import torch
from torch import nn

from ..encoders import gather_prompt_vectors
from ..layers import Dropout
from .adjacency import SUPPORTED_RELATIONS_LAYERS, build_adjacency_scorer
from .reference_keys import relation_state_dict_from_reference
from .triples import build_triple_scorer

# Inference bounds (see RelationHead.candidate_pair_blocks / pairs_per_chunk): pairs classified
# per forward call (each holds about 13 D floats through the pair projection: ~50 MB at D = 256), and
# adjacency cells scored per block (the mlp scorer holds about 4 D floats per cell).
PAIRS_PER_CHUNK = 4096
ADJACENCY_BLOCK_CELLS = 16_384


def _two_layer_projection(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear(in, 4*out) -> ReLU -> Dropout -> Linear(4*out, out).

    Same layout (and therefore the same ``0.`` / ``3.`` parameter indices) as the
    reference's projection layers.
    """
    return nn.Sequential(
        nn.Linear(in_dim, out_dim * 4),
        nn.ReLU(),
        Dropout(dropout),
        nn.Linear(out_dim * 4, out_dim),
    )


class RelationHead(nn.Module):
    """Relation part of a GLiNER span relex model.

    Args:
        hidden_size: model hidden size D (config ``hidden_size``).
        relations_layer: config ``relations_layer`` - one of
            :data:`SUPPORTED_RELATIONS_LAYERS` (case-insensitive except
            ``"none"``).
        triples_layer: config ``triples_layer`` - None (pair projection) or
            one of :data:`SUPPORTED_TRIPLES_LAYERS`.
        dropout: config ``dropout`` (only used in training mode).

    Submodules (``None`` when absent): ``adjacency_scorer``,
    ``pair_projection`` (Linear(2D, 4D), ReLU, Dropout, Linear(4D, D)),
    ``triple_scorer``.
    """

    def __init__(
        self,
        hidden_size: int,
        relations_layer: str = "dot",
        triples_layer: Optional[str] = None,
        dropout: float = 0.4,
    ):
        super().__init__()
        if relations_layer is None:
            raise ValueError(
                "relations_layer is None: this is not a relex model; supported values: "
                + ", ".join(SUPPORTED_RELATIONS_LAYERS)
            )
        self.hidden_size = hidden_size
        self.relations_layer = relations_layer
        self.triples_layer = triples_layer
        # the reference compares against "none" before lower-casing
        if relations_layer == "none":
            self.adjacency_scorer: Optional[nn.Module] = None
        else:
            self.adjacency_scorer = build_adjacency_scorer(relations_layer, hidden_size)
        if triples_layer is not None:
            self.triple_scorer: Optional[nn.Module] = build_triple_scorer(triples_layer)
            self.pair_projection: Optional[nn.Module] = None
        else:
            self.triple_scorer = None
            self.pair_projection = _two_layer_projection(2 * hidden_size, hidden_size, dropout)

    # -- checkpoint helpers -------------------------------------------------

    def load_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        """Load the relation tensors of a full reference state dict (keys renamed)."""
        return self.load_state_dict(relation_state_dict_from_reference(state_dict), strict=strict)

    # -- stages ----------------------------------------------------------------

    def score_adjacency(self, entity_rep: torch.Tensor, entity_mask: torch.Tensor) -> Optional[torch.Tensor]:
        """(B, E, D), (B, E) -> (B, E, E) adjacency probabilities (None for "none")."""
        if self.adjacency_scorer is None:
            return None
        return self.adjacency_scorer(entity_rep, entity_mask)

    def score_relations(
        self, head_rep: torch.Tensor, tail_rep: torch.Tensor, rel_prompts: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, N, D) heads, (B, N, D) tails, (B, R, D) relation prompts -> ((B, N, R) logits, pair reps)."""
        if self.pair_projection is not None:
            pair_rep = self.pair_projection(torch.cat((head_rep, tail_rep), dim=-1))
            return torch.einsum("BND,BCD->BNC", pair_rep, rel_prompts), pair_rep
        B, N, D = head_rep.shape
        R = rel_prompts.size(1)
        heads = head_rep.unsqueeze(2).expand(B, N, R, D).reshape(B * N * R, D)
        tails = tail_rep.unsqueeze(2).expand(B, N, R, D).reshape(B * N * R, D)
        rels = rel_prompts.unsqueeze(1).expand(B, N, R, D).reshape(B * N * R, D)
        return self.triple_scorer(heads, rels, tails).view(B, N, R), None

    # -- bounded-memory inference over one sample ----------------------------------------------
    #
    # The reference builds every candidate pair of a batch at once (tests/modeling/relation_oracle.py): N = E^2 pairs
    # in the worst case, each carrying a (2D -> 4D -> D) projection, which is what made the reference
    # need tens of GB on a few hundred entities. The methods below give the same pairs, in the same
    # order, with the same scores, a bounded block at a time.

    def candidate_pair_blocks(
        self,
        entity_rep: torch.Tensor,
        entity_mask: torch.Tensor,
        adjacency_threshold: float,
        block_cells: int = ADJACENCY_BLOCK_CELLS,
    ) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """One sample's candidate pairs, ``entity_rep`` (E, D) and ``entity_mask`` (E,), as
        successive ``(index (n, 2) long, adjacency (n,) or None)`` blocks whose concatenation is
        the reference's row-major pair list (tests/modeling/relation_oracle.py). Each block covers at most ``block_cells`` (head, tail)
        cells (at least one head row), so memory does not grow with E^2."""
        E = entity_rep.size(0)
        device = entity_rep.device
        rows_per_block = max(1, block_cells // max(E, 1))
        if self.adjacency_scorer is None:
            # the reference pairs the first n entities, n = the number of real ones
            n = int(entity_mask.sum())
            for start in range(0, n, rows_per_block):
                stop = min(n, start + rows_per_block)
                heads = torch.arange(start, stop, device=device).repeat_interleave(n)
                tails = torch.arange(n, device=device).repeat(stop - start)
                distinct = heads != tails
                yield torch.stack((heads[distinct], tails[distinct]), dim=1), None
            return
        if E < 2:
            return
        reps, mask = entity_rep.unsqueeze(0), entity_mask.unsqueeze(0)
        score_rows = getattr(self.adjacency_scorer, "score_rows", None)
        # only the mlp scorer costs more than E x E to compute; the others are scored whole once
        whole = None if score_rows is not None else self.adjacency_scorer(reps, mask)[0]
        for start in range(0, E, rows_per_block):
            stop = min(E, start + rows_per_block)
            block = score_rows(reps, mask, start, stop)[0] if whole is None else whole[start:stop]
            passing = block > adjacency_threshold
            rows = torch.arange(stop - start, device=device)
            passing[rows, rows + start] = False  # no self pairs
            local = torch.nonzero(passing)  # row-major
            values = block[local[:, 0], local[:, 1]]
            local[:, 0] += start
            yield local, values

    def pairs_per_chunk(self, num_relations: int) -> int:
        """How many pairs of one sample a :meth:`forward` call classifies at inference: a triple scorer expands
        every pair to one row per relation label, the pair projection does not."""
        if self.pair_projection is not None:
            return PAIRS_PER_CHUNK
        return max(1, PAIRS_PER_CHUNK // max(num_relations, 1))

    def forward(self, entity_rep: torch.Tensor, pair_index: torch.Tensor, rel_prompts: torch.Tensor) -> torch.Tensor:
        """The relation forward: (B, E, D) entity vectors, (B, N, 2) (head, tail) pairs (negative
        on padding, which reads entity 0), (B, R, D) relation prompts -> (B, N, R) relation logits.

        Training calls it on its gold and sampled pairs, inference on each window's candidate pairs
        a bounded chunk at a time (:meth:`candidate_pair_blocks`, :meth:`pairs_per_chunk`)."""
        index = pair_index.clamp_min(0)
        rows = torch.arange(index.size(0), device=index.device).unsqueeze(1)
        logits, _ = self.score_relations(entity_rep[rows, index[..., 0]], entity_rep[rows, index[..., 1]], rel_prompts)
        return logits



def relation_prompt_vectors(
    token_embeddings: torch.Tensor, inputs, rel_token_id: int, embed_rel_token: bool, count: int
) -> torch.Tensor:
    """(B, count, D) raw ``<<REL>>`` prompt vectors of an encoded batch (``inputs``: its input ids and
    attention mask): what the relation head scores pairs against, in training and inference."""
    vectors, _ = gather_prompt_vectors(
        token_embeddings, inputs.input_ids, inputs.attention_mask, rel_token_id, embed_rel_token, count=count
    )
    return vectors


def build_relation_head(config: Mapping[str, Any]) -> Optional[RelationHead]:
    """Build the head from a GLiNER config dict (``gliner_config.json``).

    Returns None when ``relations_layer`` is absent/None (not a relex model).
    Raises ValueError for unsupported layer values. Span and token-level relex
    models share this head: they differ only in how the entity list is chosen
    (span scores here, start/end/inside token scores in
    :mod:`spacy_gliner.inference.token_relations`), not in adjacency, pairing or scoring.
    """
    relations_layer = config.get("relations_layer")
    if relations_layer is None:
        return None
    return RelationHead(
        hidden_size=int(config.get("hidden_size", 512)),
        relations_layer=relations_layer,
        triples_layer=config.get("triples_layer"),
        dropout=float(config.get("dropout", 0.4)),
    )

