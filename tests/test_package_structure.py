"""The package's shape: stages import one way (load → chunk → embed → store → retrieve → answer → shells),
no import cycles, and Gradio and LangChain each stay inside the one module made for them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rag"

# each module's stage; a module may import only from its own stage or earlier ones
STAGES = [
    ("base", {"config", "hashing", "stopwords", "anchors"}),
    ("load", {"loaders"}),
    ("chunk", {"chunking", "context"}),
    ("embed", {"embeddings"}),
    ("store", {"lexical", "ann", "store", "milvus_store", "backends"}),
    ("index", {"indexer", "uploads"}),
    ("retrieve", {"retrieval"}),
    ("answer", {"reader", "span_reader", "answering", "llm", "local_llm"}),
    ("integrations", {"integrations", "integrations.langchain"}),
    ("assistant", {"assistant"}),
    ("eval", {"evaluation", "evalsuite"}),
    ("shell", {"render", "cli", "webapp", "__init__"}),
]
STAGE_OF = {m: i for i, (_, mods) in enumerate(STAGES) for m in mods}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    name = ".".join(rel.parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") and name != "__init__" else name


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level third-party packages) imported anywhere in the file,
    inside functions too."""
    name = module_name(path)
    package_parts = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package_parts[: len(package_parts) - node.level + 1] if node.level > 1 else package_parts
            base = [p for p in base if p != "__init__"]
            target = ".".join([*base, node.module] if node.module else base)
            if node.module is None or target == "":
                ours.update(".".join([*base, a.name]) if base else a.name for a in node.names)
            else:
                ours.add(target)
        elif isinstance(node, ast.ImportFrom):
            (ours if node.module.split(".")[0] == "rag" else theirs).add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            theirs.update(a.name.split(".")[0] for a in node.names)
    return {m for m in ours if m}, theirs


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_stage():
    assert {module_name(p) for p in MODULES} - set(STAGE_OF) == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_a_later_stage(path):
    name = module_name(path)
    ours, _ = imports(path)
    later = {m for m in ours if STAGE_OF.get(m, -1) > STAGE_OF[name]}
    assert later == set(), f"{name} ({STAGES[STAGE_OF[name]][0]}) imports later stages: {later}"


def test_there_is_no_import_cycle():
    graph = {module_name(p): {m for m in imports(p)[0] if m in STAGE_OF} for p in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt == node:
                continue
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("package, allowed", [
    ("gradio", {"webapp"}),
    ("langchain_core", {"integrations.langchain"}),
    ("langchain_openai", {"integrations.langchain"}),
    ("langchain", {"integrations.langchain"}),
    ("langchain_community", set()),
    ("langchain_text_splitters", set()),
    ("xllamacpp", {"local_llm"}),
])
def test_frameworks_are_imported_only_by_their_own_module(package, allowed):
    users = {module_name(p) for p in MODULES if package in imports(p)[1]}
    assert users <= allowed, f"{package} imported by {sorted(users - allowed)}"


def test_the_checker_sees_relative_imports_inside_functions(tmp_path):
    # the checks above would pass vacuously if the parser missed imports: prove it finds them
    ours, theirs = imports(PACKAGE / "assistant.py")
    assert {"answering", "config", "integrations.langchain", "local_llm"} <= ours
    assert "gradio" in imports(PACKAGE / "webapp.py")[1]
    assert "langchain_core" in imports(PACKAGE / "integrations" / "langchain.py")[1]
    assert {"config", "retrieval"} <= imports(PACKAGE / "integrations" / "langchain.py")[0]
