"""The SGLang release `--python` has installed, read without importing sglang, and `serve` checking the drafter
against that release's loader rules (fake interpreters that print what the probe would)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from eaglectl.enums import Algorithm
from eaglectl.serving.installed import check_release, installed_sglang
from tests.helpers import sibling_venv
from tests.synthetic_heads import head, write


def fake_interpreter(tmp_path: Path, answer: str, name: str = "fakepy") -> str:
    """An executable that answers eaglectl's probe with `answer` (and would exec nothing else)."""
    exe = tmp_path / name
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{answer}\nEOF\n")
    exe.chmod(0o755)
    return str(exe)


def with_version(tmp_path: Path, version: str) -> str:
    return fake_interpreter(tmp_path, json.dumps({"installed": True, "version": version}), f"py-{version}")


def serve(cli, target, draft, python, *extra):
    return cli("serve", "--json", "--target", target, "--draft", draft, "--python", python, *extra)


@pytest.fixture
def exec_server(mocker):
    return mocker.patch("eaglectl.serving.launcher.exec_server")


# --- the probe ---------------------------------------------------------------------------------------------------
def _fake_sglang_site(tmp_path: Path, *, metadata: str | None, version_py: str | None) -> Path:
    site = tmp_path / "site"
    pkg = site / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the probe must not import sglang')\n")
    if version_py is not None:
        (pkg / "version.py").write_text(f'__version__ = "{version_py}"\n')
    if metadata is not None:
        dist = site / f"sglang-{metadata}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sglang\nVersion: {metadata}\n")
    return site


@pytest.mark.parametrize(("metadata", "version_py", "expected"), [
    ("0.5.17", "0.0.0", "0.5.17"),  # the distribution metadata first
    (None, "0.5.15.post1", "0.5.15.post1"),  # a source checkout: sglang/version.py, read as text
])
def test_the_probe_reads_the_version_without_importing_sglang(tmp_path, metadata, version_py, expected):
    site = _fake_sglang_site(tmp_path, metadata=metadata, version_py=version_py)
    python = tmp_path / "python-with-sglang"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    assert installed_sglang(str(python)).version == expected


def test_no_sglang_is_exit_2_with_the_install_hint(cli, samples, tmp_path):
    python = fake_interpreter(tmp_path, json.dumps({"installed": False, "version": None}))
    result = serve(cli, samples["target"], samples["specforge"], python)
    assert result.exit_code == 2 and 'pip install "sglang>=0.5.9"' in result.stderr


# --- serve: refuse what the installed release would load wrong --------------------------------------------------
def test_norm_before_fc_head_is_refused_by_0_5_15_naming_0_5_17(cli, samples, tmp_path, exec_server):
    draft = write(tmp_path / "nbf", *head(input_norm=True, norm_before_fc=True))
    before = sorted(p.name for p in draft.iterdir())
    result = serve(cli, samples["target"], draft, with_version(tmp_path, "0.5.15"))
    assert result.exit_code == 1, result.stderr
    assert "SGLang 0.5.15" in result.stderr and "ignores config key norm_before_fc" in result.stderr
    assert "needs SGLang >= 0.5.17" in result.stderr and 'pip install "sglang>=0.5.17"' in result.stderr
    assert sorted(p.name for p in draft.iterdir()) == before  # refused before any export
    exec_server.assert_not_called()


@pytest.mark.parametrize(("version", "ok"), [("0.5.11", False), ("0.5.12", True), ("0.5.23", True)])
def test_multi_layer_head_needs_0_5_12(cli, samples, tmp_path, exec_server, version, ok):
    draft = write(tmp_path / "two", *head(layers=2))
    result = serve(cli, samples["target"], draft, with_version(tmp_path, version))
    if ok:
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)["result"]
        assert doc["sglang_version"] == version and doc["sglang_rules"].startswith(("0.5.12", "0.5.17"))
        exec_server.assert_called_once()
    else:
        assert result.exit_code == 1 and "builds exactly one EAGLE-3 layer" in result.stderr
        assert 'pip install "sglang>=0.5.12"' in result.stderr
        exec_server.assert_not_called()


def test_plain_head_serves_with_0_5_15_as_before(cli, samples, tmp_path, exec_server):
    result = serve(cli, samples["target"], samples["specforge"], with_version(tmp_path, "0.5.15"))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["result"]
    assert (doc["sglang_version"], doc["sglang_rules"]) == ("0.5.15", "0.5.15–0.5.16")
    assert "newer than" not in result.stderr


def test_a_release_newer_than_known_is_a_warning(cli, samples, tmp_path, exec_server):
    result = serve(cli, samples["target"], samples["specforge"], with_version(tmp_path, "0.5.30"))
    assert result.exit_code == 0
    assert "SGLang 0.5.30 is newer than 0.5.23" in result.stderr
    exec_server.assert_called_once()


def test_a_release_older_than_supported_is_refused(cli, samples, tmp_path, exec_server):
    result = serve(cli, samples["target"], samples["specforge"], with_version(tmp_path, "0.4.10"))
    assert result.exit_code == 1 and "older than 0.5.9" in result.stderr
    assert 'pip install "sglang>=0.5.9"' in result.stderr


def test_an_unreadable_version_is_a_warning_and_the_newest_rules(cli, samples, tmp_path, exec_server):
    result = serve(cli, samples["target"], samples["specforge"], fake_interpreter(tmp_path, "garbage"))
    assert result.exit_code == 0 and "could not read the installed SGLang version" in result.stderr


def test_print_only_asks_no_interpreter(cli, samples, tmp_path):
    draft = write(tmp_path / "nbf", *head(layers=2))
    result = serve(cli, samples["target"], draft, fake_interpreter(tmp_path, "not called"), "--print-only")
    assert result.exit_code == 0 and json.loads(result.stdout)["result"]["sglang_version"] is None


def test_check_release_is_one_function_for_serve_and_bench():
    cfg, shapes = head(norms="fc_norm", fc_norm=True)
    old = check_release("0.5.10.post1", cfg, shapes, Algorithm.EAGLE3)
    assert old.minimum == "0.5.12" and old.rules == "0.5.10–0.5.11"
    assert "ignores config key fc_norm" in old.problems
    new = check_release("0.5.13.post1", cfg, shapes, Algorithm.EAGLE3)
    assert new.rules == "0.5.12–0.5.14" and new.problems == [] and new.warnings == []


def test_four_aux_states_on_0_5_14_need_cuda_graphs_off():
    cfg, shapes = head(n_aux=4, num_aux_hidden_states=4)
    on = check_release("0.5.14", cfg, shapes, Algorithm.EAGLE3)
    assert on.minimum == "0.5.15" and any("CUDA graphs" in p for p in on.problems)
    off = check_release("0.5.14", cfg, shapes, Algorithm.EAGLE3, cuda_graph=False)
    assert off.minimum == "0.5.12" and off.problems == []


# --- flags spelled as the installed release spells them ---------------------------------------------------------
@pytest.mark.parametrize(("version", "spelling"), [
    ("0.5.13.post1", ["--disable-cuda-graph"]),
    ("0.5.14", ["--disable-decode-cuda-graph", "--disable-prefill-cuda-graph"]),
    ("0.5.23", ["--disable-decode-cuda-graph", "--disable-prefill-cuda-graph"]),
])
def test_disable_cuda_graph_is_spelt_as_the_installed_release_spells_it(cli, samples, tmp_path, exec_server,
                                                                       version, spelling):
    result = serve(cli, samples["target"], samples["specforge"], with_version(tmp_path, version),
                   "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    argv = json.loads(result.stdout)["result"]["argv"]
    assert [a for a in argv if "cuda-graph" in a] == spelling
    assert exec_server.call_args.args[0] == argv  # what is launched, not only what is shown


def test_print_only_spells_disable_cuda_graph_as_every_release_accepts_it(cli, samples):
    result = cli("serve", "--json", "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    assert [a for a in json.loads(result.stdout)["result"]["argv"] if "cuda-graph" in a] == ["--disable-cuda-graph"]


def test_print_only_spells_flags_as_this_interpreters_sglang_does(cli, samples, monkeypatch):
    """`--python` is this interpreter: its SGLang release is read from its metadata (no import, no process)."""
    monkeypatch.setattr("eaglectl.serving.installed.probe", lambda: {"installed": True, "version": "0.5.15"})
    result = cli("serve", "--json", "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    argv = json.loads(result.stdout)["result"]["argv"]
    assert [a for a in argv if "cuda-graph" in a] == ["--disable-decode-cuda-graph", "--disable-prefill-cuda-graph"]


# --- two venvs of one base interpreter -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sibling_venvs(tmp_path_factory) -> dict[str, str]:
    """Two real venvs made from this interpreter's base (each venv's python is a symlink to the same binary): one
    with SGLang 0.5.15's metadata in its site-packages (an `sglang` that must never be imported), one without."""
    root = tmp_path_factory.mktemp("venvs")
    return {"with": sibling_venv(root / "with", {"sglang": "0.5.15"}), "without": sibling_venv(root / "without")}


def test_a_sibling_venv_of_the_same_base_is_another_interpreter(sibling_venvs):
    from eaglectl.serving.installed import is_this_interpreter

    here = getattr(sys, "_base_executable", None) or sys.executable
    assert Path(sibling_venvs["with"]).resolve() == Path(here).resolve()  # the same binary behind the link
    assert not is_this_interpreter(sibling_venvs["with"]) and not is_this_interpreter(sibling_venvs["without"])
    assert is_this_interpreter(sys.executable)
    # the probe runs in that venv (which reads its own metadata), not in this process (which has no SGLang)
    assert installed_sglang(sibling_venvs["with"]).version == "0.5.15"
    with pytest.raises(Exception, match="SGLang is not importable"):
        installed_sglang(sibling_venvs["without"])


def test_print_only_spells_flags_as_the_other_venvs_sglang_does(cli, samples, sibling_venvs, monkeypatch):
    monkeypatch.setattr("eaglectl.serving.installed.probe", lambda: {"installed": True, "version": "0.5.13"})
    result = serve(cli, samples["target"], samples["specforge"], sibling_venvs["with"], "--print-only",
                   "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    argv = json.loads(result.stdout)["result"]["argv"]
    assert argv[0] == sibling_venvs["with"]
    assert [a for a in argv if "cuda-graph" in a] == ["--disable-decode-cuda-graph", "--disable-prefill-cuda-graph"]
    assert "could not read the SGLang release" not in result.stderr


def test_print_only_warns_when_the_other_venvs_release_cannot_be_read(cli, samples, sibling_venvs, monkeypatch):
    monkeypatch.setattr("eaglectl.serving.installed.probe", lambda: {"installed": True, "version": "0.5.15"})
    result = serve(cli, samples["target"], samples["specforge"], sibling_venvs["without"], "--print-only",
                   "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    assert [a for a in json.loads(result.stdout)["result"]["argv"] if "cuda-graph" in a] == ["--disable-cuda-graph"]
    assert "could not read the SGLang release of" in result.stderr
