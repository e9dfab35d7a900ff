"""Training the ``gliner_linker``: the candidates each gold mention is contrasted with, the
batches built from them, and their contrastive loss, stepped by the linker's own optimizer.

The component reads gold mentions from spaCy Examples (:meth:`GlinerLinker._gold_mentions`) and
hands them here as plain items ``(words, mention word span, mention text, gold id or None for NIL)``.
Torch is imported lazily: the factory module imports this one.
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

# (words of the doc, (start, end) word span of the mention, mention text, gold id; None for NIL)
GoldMention = Tuple[List[str], Tuple[int, int], str, Optional[str]]


class LinkerLearner:
    """The trainer of one linker, with the score mixing weights it learns as torch parameters.

    ``weights`` (one per feature) and ``bias`` start from the component's current values; after
    each step :meth:`learned_mixing` gives them back for the component's ``cfg``.
    """

    def __init__(self, encoder, settings: Dict[str, Any], weights: Sequence[float], bias: float):
        import torch

        from ..training.settings import optimizer_settings
        from ..training.trainer import Trainer

        device = encoder.model.device
        self.encoder = encoder
        self.settings = settings
        self.mix = (torch.nn.Parameter(torch.tensor(list(weights), dtype=torch.float32, device=device)),
                    torch.nn.Parameter(torch.tensor(bias, dtype=torch.float32, device=device)))
        self.trainer = Trainer(encoder.model, optimizer_settings(settings), extra_parameters=self.mix,
                               extra_lr=settings["feature_lr"])
        self.rng = random.Random(settings["seed"])
        self._candidates = None
        self._candidates_kb = None

    def learned_mixing(self) -> Tuple[List[float], float]:
        weights, bias = self.mix
        return [float(w) for w in weights.detach().cpu()], float(bias.detach().cpu())

    def training_candidates(self, kb):
        """Training negatives: exact-alias and fuzzy (trigram) candidates, the hard negatives that
        share the mention's surface form. Dense candidates are left out: they would need the
        whole KB re-embedded after every update. Rebuilt when the linker's KB changes."""
        if self._candidates is None or self._candidates_kb is not kb:
            from ..kb.candidates import ExactAliasCandidates, FuzzyCandidates, MergedCandidates

            k = max(1, self.settings["negatives"] + 1)
            self._candidates = MergedCandidates(
                [ExactAliasCandidates(kb, k=k), FuzzyCandidates(kb, k=2 * k, min_score=0.3)], k=2 * k)
            self._candidates_kb = kb
        return self._candidates

    def batch(self, items: List[GoldMention], kb, features, sample: bool = True) -> Optional[Dict[str, Any]]:
        """The tensors-to-be of one training batch, or None when it has nothing to learn from.
        With ``sample``, a batch with more than ``max_mentions`` mentions is sampled down."""
        import numpy as np

        from ..kb.entities import entity_text

        settings = self.settings
        if sample and len(items) > settings["max_mentions"]:
            items = self.rng.sample(items, settings["max_mentions"])
        generate, negatives = self.training_candidates(kb), settings["negatives"]
        columns: Dict[str, int] = {}
        own: List[List[int]] = []
        kept = []
        for words, span, text, gold in items:
            ids = [gold] if gold is not None else []
            ids += [c.entity_id for c in generate(text) if c.entity_id != gold][:negatives]
            if len(ids) < (2 if gold is not None else 1) and not settings["in_batch_negatives"]:
                continue  # nothing to contrast with
            kept.append((words, span, text, gold))
            own.append([columns.setdefault(eid, len(columns)) for eid in ids])
        if not kept or not any(gold is not None for *_, gold in kept) and not any(own):
            return None
        ids = list(columns)
        entities = kb.get_many(ids)
        mask = np.zeros((len(kept), len(ids)), dtype=bool)
        for row, cols in enumerate(own):
            mask[row, cols] = True
        gold = np.array([columns[g] if g is not None else -1 for *_, g in kept], dtype=np.int64)
        feature_rows = np.stack([features.rows(text, entities) for _, _, text, _ in kept])
        docs: Dict[int, Tuple[List[str], List[Tuple[int, int]]]] = {}
        where = []
        for words, span, _, _ in kept:
            key = id(words)
            docs.setdefault(key, (words, []))[1].append(span)
            where.append((key, len(docs[key][1]) - 1))
        return {"docs": docs, "where": where, "texts": [entity_text(e) for e in entities], "mask": mask,
                "gold": gold, "features": feature_rows}

    def loss(self, batch: Dict[str, Any], temperature: float):
        import torch

        from ..inference.linking import link_logits
        from ..training.losses import contrastive_linking_loss

        encoder, device = self.encoder, self.encoder.model.device
        keys = list(batch["docs"])
        listened = batch.get("word_vectors")  # a shared transformer's, per doc key (components/listener.py)
        per_doc = encoder.mention_tensors([batch["docs"][k][0] for k in keys], [batch["docs"][k][1] for k in keys],
                                          [listened[k] for k in keys] if listened is not None else None)
        by_key = dict(zip(keys, per_doc))
        mentions = torch.stack([by_key[key][i] for key, i in batch["where"]])
        entities = encoder.entity_tensors(batch["texts"])
        weights, bias = self.mix
        logits = link_logits(mentions @ entities.T, torch.from_numpy(batch["features"]).to(device), weights, bias,
                             temperature)
        s = self.settings
        return contrastive_linking_loss(logits, torch.from_numpy(batch["gold"]).to(device),
                                        torch.from_numpy(batch["mask"]).to(device), s["in_batch_negatives"],
                                        s["binary_weight"])

    def step(self, batch: Dict[str, Any], temperature: float) -> float:
        return self.trainer.apply(lambda: self.loss(batch, temperature))
