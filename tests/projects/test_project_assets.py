"""No spaCy project may point an asset destination at the shared data: `weasel assets` deletes an
existing git-asset destination that has no matching checksum before cloning into it."""
from pathlib import Path

import pytest
import srsly

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = sorted(ROOT.glob("projects/*/project.yml"))


def test_projects_exist():
    assert {p.parent.name for p in PROJECTS} >= {"zero_shot_ner", "linking"}


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.parent.name)
def test_asset_destinations_stay_inside_the_project(project):
    config = srsly.read_yaml(project)
    home = project.parent
    for asset in config.get("assets", []):
        dest = (home / asset["dest"]).resolve()
        assert dest.is_relative_to(home / "assets"), f"{project}: asset dest {asset['dest']!r} leaves assets/"
        assert "${" not in asset["dest"], f"{project}: asset dest {asset['dest']!r} depends on a variable"


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.parent.name)
def test_projects_are_self_contained(project):
    """A project runs its own scripts and the package's modules, never another project's files."""
    home = project.parent
    others = [p.parent.name for p in PROJECTS if p != project]
    texts = [project.read_text(encoding="utf-8")]
    texts += [script.read_text(encoding="utf-8") for script in sorted(home.glob("scripts/*.py"))]
    for text in texts:
        for other in others:
            assert f"../{other}/" not in text and f'"{other}"' not in text, f"{home.name} reaches into {other}"
