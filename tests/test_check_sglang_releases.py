"""scripts/check_sglang_releases.py offline: fabricated wheels (zips) against a recorded-hashes file; the
package's own record against the rule tables."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest

from eaglectl.engines.sglang import rules

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_sglang_releases.py"
E3, LLAMA = "sglang/srt/models/llama_eagle3.py", "sglang/srt/models/llama.py"
FILES = {E3: b"class LlamaForCausalLMEagle3: ...\n", LLAMA: b"class LlamaForCausalLM: ...\n"}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("check_sglang_releases", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel(directory: Path, version: str, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sglang-{version}-cp311-cp311-manylinux_2_34_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"sglang-{version}.dist-info/METADATA", f"Name: sglang\nVersion: {version}\n")
    return path


@pytest.fixture
def record(tmp_path) -> Path:
    path = tmp_path / "hashes.json"
    path.write_text(json.dumps({"releases": {"0.5.22": {E3: sha(b"old\n")},
                                             "0.5.23": {p: sha(d) for p, d in FILES.items()}}}))
    return path


def test_a_newer_release_with_the_same_loader_files_is_no_drift(script, tmp_path, record, capsys):
    wheel(tmp_path / "w", "0.5.24", FILES)
    assert script.main(["--offline", "--wheel-dir", str(tmp_path / "w"), "--hashes", str(record)]) == 0
    assert "sglang 0.5.24: loader files as recorded for 0.5.23 (2 files)" in capsys.readouterr().out


def test_a_changed_missing_or_new_loader_file_is_drift(script, tmp_path, record, capsys):
    wheel(tmp_path / "w", "0.5.24", {E3: b"class LlamaForCausalLMEagle3: changed\n",
                                     "sglang/srt/models/qwen3_eagle3.py": b"new\n"})
    assert script.main(["--wheel-dir", str(tmp_path / "w"), "--hashes", str(record)]) == 1
    out = capsys.readouterr().out
    assert "sglang 0.5.24: DRIFT against 0.5.23" in out
    assert f"changed  {E3}" in out and f"missing  {LLAMA}" in out
    assert "new      sglang/srt/models/qwen3_eagle3.py" in out


def test_a_known_release_is_compared_with_its_own_record(script, tmp_path, record):
    diff = script.diff_wheel(wheel(tmp_path / "w", "0.5.22", {E3: b"old\n"}), "0.5.22",
                             script.load_record(record))
    assert diff.against == "0.5.22" and not diff.drift and diff.unchanged == 1


def test_releases_newer_than_known_from_the_index_listing(script, tmp_path):
    fake_pip = tmp_path / "pip"
    fake_pip.write_text("#!/bin/sh\necho 'sglang (0.5.25)'\n"
                        "echo 'Available versions: 0.5.25, 0.5.24, 0.5.23.post1, 0.5.23, 0.5.9'\n")
    fake_pip.chmod(0o755)
    listed = script.index_versions([str(fake_pip)])
    assert script.newer_than_known(listed) == ["0.5.23.post1", "0.5.24", "0.5.25"]


def test_no_wheels_is_exit_2(script, tmp_path, record):
    (tmp_path / "empty").mkdir()
    assert script.main(["--offline", "--wheel-dir", str(tmp_path / "empty"), "--hashes", str(record)]) == 2


def test_the_package_record_covers_every_known_release(script):
    recorded = script.load_record()
    assert list(recorded) == list(rules.RELEASES)
    for version, files in recorded.items():
        assert E3 in files and "sglang/srt/models/llama_eagle.py" in files and LLAMA in files, version
        assert all(len(h) == 64 for h in files.values())
    assert recorded["0.5.17"][E3] != recorded["0.5.16"][E3]  # norm_before_fc arrived in 0.5.17
    assert recorded["0.5.15.post1"][E3] == recorded["0.5.15"][E3]  # a post-release changed no loader


def test_the_script_runs_standalone(tmp_path, record):
    import subprocess

    wheel(tmp_path / "w", "0.5.24", FILES)
    done = subprocess.run([sys.executable, str(SCRIPT), "--offline", "--wheel-dir", str(tmp_path / "w"),
                           "--hashes", str(record)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "as recorded for 0.5.23" in done.stdout


def _capture_sources() -> list:
    """Every Source of the target-side capture tables (families, rules with their optional parts, the order)."""
    from eaglectl.engines.source import Rule, Source

    found = []
    for row in (*rules.CAPTURE_FAMILIES, *rules.CAPTURE_RULES, *rules.CAPTURE_ORDER):
        for value in vars(row).values():
            if isinstance(value, Source):
                found.append(value)
            elif isinstance(value, Rule):
                found.append(value.source)
    return found


def test_the_record_hashes_every_file_a_capture_rule_comes_from(script):
    """A new release that changes a file a capture rule was read from is noticed: each Source's file is recorded
    for its release (unless the source says the file is absent there), and every other file its lines name is
    recorded for some release."""
    import re

    recorded = script.load_record()
    everywhere = {path for files in recorded.values() for path in files}
    for source in _capture_sources():
        if source.where != "absent":
            assert source.file in recorded[source.release], source
        for named in re.findall(r"[\w/]+\.py", source.where):
            assert any(path == named or path.endswith("/" + named) for path in everywhere), (named, source)
