"""Knowledge-base layer for the ``gliner_linker`` component (torch-free).

Import the submodules you need; nothing heavy is imported here:

* ``entities``   - ``Entity``, ``entity_text`` (the text the model reads), JSONL and spaCy-KB loading
* ``memory`` / ``sqlite`` - ``InMemoryKB`` and ``SQLiteKB`` (``base.KnowledgeBase`` protocol); ``opening.open_kb`` / ``load_kb`` open any of them
* ``embeddings`` - ``ensure_embeddings`` / ``EmbeddingStore`` (float16, memory-mapped, fingerprinted)
* ``candidates`` - exact / fuzzy / dense / merged candidate generators (spaCy ``misc`` registry)
* ``linking_benchmarks`` - readers for the linking benchmarks in ``shared/data``
"""
