"""The shape of the package: every command registered in one place and visible to Typer's own tools, command
modules that never import the app, and no import cycles anywhere (function-level imports count too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from eaglectl.cli.app import EaglectlCommand, app
from eaglectl.cli.options import JsonOpt  # module level: Typer resolves the recipe command's annotations here

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
        if path.name in ("app.py", "entry.py"):  # the app, and the entry point that runs it
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


# The house, ground floor first. A module may import its own floor's package or a lower floor's, never a higher
# one (function-level and TYPE_CHECKING imports count): engine knowledge sits low, orchestration high.
FLOORS = [
    ("base", ("eaglectl", "eaglectl.errors", "eaglectl.enums", "eaglectl.sizes", "eaglectl.jsonfile",
              "eaglectl.output", "eaglectl.hub", "eaglectl.interrupts")),
    ("engines", ("eaglectl.engines",)),  # what each engine loads, skips, captures, spells: data + pure functions
    ("checkpoint", ("eaglectl.checkpoint",)),  # reading drafters and targets
    ("checks", ("eaglectl.checks",)),  # failure-mode rules over a head's config, names and shapes
    ("export", ("eaglectl.export",)),  # plan, write, verify, swap
    ("inspection", ("eaglectl.inspection",)),  # inspect's report, assembled from the floors below
    ("serving", ("eaglectl.serving",)),  # installed release, flag parser, argv, launch, supervise
    ("runner", ("eaglectl.runner",)),  # the target runner and probe-target
    ("bench", ("eaglectl.bench",)),
    ("demo", ("eaglectl.demo",)),
    ("cli", ("eaglectl.cli", "eaglectl.__main__")),
]


def floor_of(module: str) -> int:
    """The floor of a module: its longest matching package prefix."""
    best, floor = -1, -1
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, floor = len(p), i
    return floor


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in edges.items() for t in targets if floor_of(t) > floor_of(m))


def test_every_module_has_a_floor():
    assert [m for m in _module_graph() if floor_of(m) < 0] == []


def test_the_floor_check_finds_an_upward_import():
    assert upward_imports({"eaglectl.checkpoint.x": {"eaglectl.export.y", "eaglectl.errors"}}) == [
        "eaglectl.checkpoint.x -> eaglectl.export.y"]


def test_imports_only_point_down():
    assert upward_imports(_module_graph()) == []


def test_docs_show_the_same_floors():
    """docs/architecture.md's floor table lists the same packages, in the same order."""
    import re

    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.MULTILINE)
    assert sorted((int(n), tuple(m.strip("` ") for m in mods.split(","))) for n, mods in rows) == [
        (i, prefixes) for i, (_, prefixes) in enumerate(FLOORS)]


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


def test_only_the_cli_prints():
    """Core modules return results that carry their warnings; printing and exit codes belong to eaglectl/cli/."""
    printing = {"warn", "note", "error", "emit", "emit_failure", "stdout", "stderr"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/") or rel == "output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "eaglectl.output":
                offenders += [f"{rel}: {a.name}" for a in node.names if a.name in printing]
            elif isinstance(node, ast.Attribute) and node.attr in printing and getattr(node.value, "id", "") in (
                    "output",):
                offenders.append(f"{rel}: output.{node.attr}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                offenders.append(f"{rel}: print()")
            elif isinstance(node, ast.Attribute) and node.attr == "Exit" and getattr(node.value, "id", "") == "typer":
                offenders.append(f"{rel}: typer.Exit")
    assert offenders == []


def test_the_add_a_command_recipe(tmp_path):
    """docs/architecture.md's "Add a command", followed with a tiny command: a core function returning a
    dataclass with warnings, a command module that ends with finish(), one registration line."""
    import dataclasses
    import json

    import typer
    from typer.testing import CliRunner

    from eaglectl.cli.finish import finish
    from eaglectl.errors import CheckpointError

    @dataclasses.dataclass
    class CountResult:  # step 1: the core returns a dataclass carrying its warnings
        path: str
        entries: int
        warnings: list[str]

    def count_entries(path: str) -> CountResult:
        p = tmp_path / path
        if not p.is_dir():
            raise CheckpointError(f"{path}: no such directory")
        entries = len(list(p.iterdir()))
        return CountResult(path, entries, ["empty directory"] if not entries else [])

    def count_command(path: str, json: JsonOpt = False) -> None:  # step 2: options, one core call, finish()
        result = count_entries(path)
        finish("count", result, as_json=json, render=lambda c: c.print(result.entries), warnings=result.warnings)

    before = list(app.registered_commands)
    app.command("count", cls=EaglectlCommand)(count_command)  # step 3: one registration line
    try:
        (tmp_path / "d").mkdir()
        runner = CliRunner()
        ok = runner.invoke(app, ["count", "d", "--json"])
        doc = json.loads(ok.stdout)
        assert ok.exit_code == 0 and doc["ok"] and doc["result"]["entries"] == 0
        assert "warning: empty directory" in ok.stderr
        bad = runner.invoke(app, ["count", "missing", "--json"])
        assert bad.exit_code == 1 and json.loads(bad.stdout)["error"]["type"] == "CheckpointError"
        assert bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr
    finally:
        app.registered_commands[:] = before
    assert typer.main.get_command(app).list_commands(None) == COMMANDS  # nothing left behind
