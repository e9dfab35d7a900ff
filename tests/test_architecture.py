"""The package's layers, read from its own imports (function-level imports included):
``components`` -> ``inference`` -> ``modeling``; ``kb`` stands alone; no cycles; no private name
imported from another module."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spacy_gliner"

# layer -> layers (top-level subpackages or modules) it must never import
# The applications on top (the corpus annotator, the command line, the pictures) use the
# components' public output; nothing below them imports them.
APPLICATIONS = {"annotate", "cli", "visualization", "__main__"}
FORBIDDEN = {
    "modeling": {"components", "inference", "training", "kb", "doc_relations", "evaluation"} | APPLICATIONS,
    "inference": {"components", "training", "doc_relations", "evaluation"} | APPLICATIONS,
    "kb": {"components", "inference", "training", "modeling", "doc_relations", "evaluation"} | APPLICATIONS,
    "training": {"components"} | APPLICATIONS,
    "components": APPLICATIONS,
    "doc_relations": APPLICATIONS | {"components", "inference", "modeling", "training", "kb"},
    "annotate": {"cli", "visualization", "__main__"},
    "visualization": {"annotate", "cli", "__main__", "components", "inference", "modeling", "training", "kb"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports():
    """(importing module, imported module, names) for every ``from ... import`` in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        package = importer if path.name == "__init__.py" else importer.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("spacy_gliner"):
                    continue
                names = [alias.name for alias in node.names]
                if node.module is None or target == "spacy_gliner":  # "from .. import doc_relations"
                    for name in names:
                        found.append((importer, f"{target}.{name}", []))
                else:
                    found.append((importer, target, names))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("spacy_gliner"):
                        found.append((importer, alias.name, []))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_layers_import_only_downwards():
    wrong = [
        f"{importer} imports {target}"
        for importer, target, _ in imports()
        if layer(target) in FORBIDDEN.get(layer(importer), ())
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph = {}
    for importer, target, _ in imports():
        if target in known and target != importer and not importer.startswith(target + "."):
            graph.setdefault(importer, set()).add(target)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_no_private_names_across_modules():
    wrong = [
        f"{importer} imports {name} from {target}"
        for importer, target, names in imports()
        for name in names
        if name.startswith("_") and target != importer
    ]
    assert not wrong, "\n".join(wrong)
