"""The relation part of GLiNER "relex" checkpoints (torch only), on top of the shared span model
(``UniEncoderSpanRelexModel`` / ``UniEncoderTokenRelexModel`` in the reference ``gliner`` package):

1. **Entity selection** (``pairing``) - spans whose best entity-class probability
   ``max_c sigmoid(span_logits)`` is ``> threshold`` are packed, in flat span order
   ``start * K + width``, into an entity list ``(B, E, D)``.
2. **Adjacency** (``adjacency``) - an optional scorer (config ``relations_layer``) maps the entity
   list to ``(B, E, E)`` probabilities.
3. **Pairing** (``pairing``, streamed by ``head.RelationHead.candidate_pair_blocks``) - directed
   pairs ``(head, tail)``, ``head != tail``, where ``adjacency > adjacency_threshold`` (every pair
   when ``relations_layer == "none"``), row-major.
4. **Relation scoring** (``head.RelationHead.forward``) - a pair projection (concatenated head and
   tail, 2-layer MLP, dot product with each relation prompt) or a knowledge-graph triple scorer
   (``triples``, config ``triples_layer``) gives ``(B, N, R)`` logits.

Nothing here depends on spaCy or on the ``gliner`` package; parameter names are our own, and
``reference_keys`` maps the reference checkpoint's state-dict names onto them. See
``docs/relex_reference.md`` for the full spec.
"""
