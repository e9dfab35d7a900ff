"""Readers that turn the public NER / relation corpora into gold spaCy ``Doc`` objects.

* ``gold_docs``     - the gold ``Doc`` every reader builds (:func:`build_doc`) and ``ReadStats``
* ``gliner_json``   - GLiNER JSON (evaluation bundle and training format)
* ``bio_columns``   - BIO / CoNLL column files
* ``relation_json`` - CoNLL04, CrossRE, SciERC
* ``dispatch``      - formats by name (``FORMATS``, ``iter_corpus``, ``read_corpus``)

Label names come from :mod:`spacy_gliner.training.label_names`, the ``Doc`` keys from
:mod:`spacy_gliner.training.doc_keys`; the spaCy reader is
:mod:`spacy_gliner.training.gold_corpus_reader`.
"""
