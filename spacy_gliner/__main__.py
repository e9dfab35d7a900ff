"""``python -m spacy_gliner``: the command line (see :mod:`spacy_gliner.cli`)."""
import sys

from .cli import main

sys.exit(main())
