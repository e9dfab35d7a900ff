"""String-side features of a (mention, entity) pair, mixed into the linker's score.

The bi-encoder score ``entity . mention`` alone cannot tell a popular entity from an obscure
namesake, and a dense candidate is by construction one the bi-encoder already likes. The
linker therefore scores

    z = (entity . mention) / temperature + sum_i weight_i * feature_i + bias

with weights learned by the contrastive training (all zero before training, so an untrained
linker scores exactly ``entity . mention``). The features, defined for *every* pair whatever
generator proposed the candidate:

* ``prior``: P(entity | alias = mention) from the KB's alias priors (``lookup_alias``); 0 when
  the mention is not an alias of the entity. This is the feature spaCy's ``EntityLinker`` uses.
* ``string``: the best character-trigram cosine between the normalised mention and any alias
  (name included) of the entity, in [0, 1].

No torch here: these are plain floats the linker turns into a tensor.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .base import KnowledgeBase
from .entities import Entity
from .normalize import char_ngrams, normalize_mention

FEATURES = ("prior", "string")


def check_features(names: Sequence[str], owner: str = "features") -> List[str]:
    """The feature names, validated (unknown or repeated names are errors listing the allowed ones)."""
    names = list(names)
    unknown = [n for n in names if n not in FEATURES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"{owner}: unknown or repeated feature(s) {names!r}; choose from {list(FEATURES)} "
                         "(an empty list scores with the bi-encoder alone).")
    return names


def _grams(text: str) -> frozenset:
    return frozenset(char_ngrams(normalize_mention(text)))


def trigram_cosine(a: frozenset, b: frozenset) -> float:
    """Cosine of two binary trigram sets (the fuzzy index's weighting, without IDF)."""
    if not a or not b:
        return 0.0
    return len(a & b) / math.sqrt(len(a) * len(b))


class PairFeatures:
    """Feature rows for a mention against a list of entities; alias grams cached per entity id."""

    def __init__(self, kb: KnowledgeBase, names: Sequence[str], cache_size: int = 100_000):
        self.kb = kb
        self.names = check_features(names)
        self.cache_size = cache_size
        self._alias_grams: Dict[str, Tuple[frozenset, ...]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def _entity_grams(self, entity: Entity) -> Tuple[frozenset, ...]:
        grams = self._alias_grams.get(entity.id)
        if grams is None:
            grams = tuple(_grams(alias) for alias in entity.all_aliases())
            if len(self._alias_grams) >= self.cache_size:
                self._alias_grams.clear()
            self._alias_grams[entity.id] = grams
        return grams

    def rows(self, mention: str, entities: Sequence[Entity]) -> np.ndarray:
        """``(len(entities), len(names))`` float32 features of ``mention`` against each entity."""
        out = np.zeros((len(entities), len(self.names)), dtype=np.float32)
        if not self.names or not entities:
            return out
        priors = dict(self.kb.lookup_alias(mention)) if "prior" in self.names else {}
        mention_grams = _grams(mention) if "string" in self.names else frozenset()
        for row, entity in enumerate(entities):
            for column, name in enumerate(self.names):
                if name == "prior":
                    out[row, column] = priors.get(entity.id, 0.0)
                else:
                    out[row, column] = max((trigram_cosine(mention_grams, g) for g in self._entity_grams(entity)), default=0.0)
        return out
