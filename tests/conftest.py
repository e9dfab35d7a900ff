"""Session fixtures; the helpers they use live in support.py (two conftest files exist, so
tests import helpers from support, never from conftest)."""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from support import FAMILIES, build_reference_checkpoint

# Hypothesis profiles (tests/components/test_properties.py): "ci" is derandomized so a CI run is
# reproducible and stays within about two minutes on two cores; "deep" draws ten times as many
# examples from a fresh random seed. Select with HYPOTHESIS_PROFILE=deep.
_PROFILE = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_PROFILE)
settings.register_profile("deep", max_examples=1000, print_blob=True, **_PROFILE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """family name -> checkpoint directory, built lazily."""
    root = tmp_path_factory.mktemp("checkpoints")
    built = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_reference_checkpoint(root / name, **FAMILIES[name])
        return built[name]

    return get


@pytest.fixture(scope="session")
def reference_models(checkpoints):
    from gliner import GLiNER

    loaded = {}

    def get(name: str):
        if name not in loaded:
            model = GLiNER.from_pretrained(str(checkpoints(name)), load_tokenizer=True)
            model.eval()
            loaded[name] = model
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def hub_families():
    """zoo family name -> its hub id, the replica built into the session's hub cache on first use."""
    from zoo.families import ALL_FAMILIES, build_family

    built = {}

    def get(name: str) -> str:
        if name not in built:
            built[name] = build_family(ALL_FAMILIES[name])
        return built[name]

    return get
