"""The shape of the package: every command registered in one place and visible to Typer's own tools, command
modules that never import the app, and no import cycles anywhere (function-level imports count too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from eaglectl.cli.app import app

PACKAGE = Path(__file__).resolve().parent.parent / "eaglectl"
COMMANDS = ["inspect", "export", "token-map", "serve", "bench", "probe-target", "demo"]


def test_typer_docs_lists_every_command_in_workflow_order():
    out = subprocess.run([sys.executable, "-m", "typer", "eaglectl.cli.app", "utils", "docs"],
                         capture_output=True, text=True, check=True).stdout
    headings = [line.split("`")[1].split()[-1] for line in out.splitlines() if line.startswith("## `")]
    assert headings == COMMANDS


def test_commands_are_registered_in_app_in_workflow_order():
    assert [c.name for c in app.registered_commands] == COMMANDS


def test_command_modules_never_import_the_app():
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.name == "app.py":
            continue
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "eaglectl.cli.app" not in imported, path.name


def _module_graph() -> dict[str, set[str]]:
    mods: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                stem = node.module or ""
                if node.level:
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    stem = ".".join(parts[: len(parts) - node.level + 1] + ([stem] if stem else []))
                targets = [stem, *(f"{stem}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                found = owner(target) if target.startswith("eaglectl") else None
                # A package's own __init__ is not a cycle with its children (Python imports it first anyway).
                if found and found != mod and not mod.startswith(found + "."):
                    edges[mod].add(found)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(_module_graph()) == []


def test_docs_and_code_never_point_at_an_issue_tracker():
    import re

    root = PACKAGE.parent
    # "issue 4", "issues 4/9": this project's own tracker. Upstream threads are cited as "SGLang PR #21272".
    pattern = re.compile(r"\b(issue|ticket)s? \d+", re.IGNORECASE)
    files = [root / "README.md", *root.glob("docs/*.md"), *root.glob("eaglectl/**/*.py"), *root.glob("scripts/**/*"),
             *root.glob("benchmarks/*.py")]
    hits = [f"{f.relative_to(root)}: {m.group(0)}" for f in files if f.is_file()
            for m in pattern.finditer(f.read_text(errors="replace"))]
    assert hits == []
