"""The CLI shell: demo, version, command order, error mapping, debug tracebacks."""

from __future__ import annotations

import json

from eaglectl import __version__


def test_demo_runs_the_main_job(cli, tmp_path):
    result = cli("demo", tmp_path / "demo", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    r = doc["result"]
    assert doc["command"] == "demo" and doc["schema_version"] == 1
    assert r["report"]["layout"] == "nemo-consolidated" and not r["report"]["sglang_ready"]
    assert r["export"]["action"] == "written"
    assert r["after_export"]["sglang_ready"] is True
    assert "--speculative-algorithm EAGLE3" in r["serve_command"]
    assert {"nemo-consolidated", "nemo-legacy-eagle3", "nemo-legacy-eagle", "specforge", "eagle-research",
            "nemo-sharded", "p-eagle", "target"} == set(r["samples"])


def test_demo_tables(cli, tmp_path):
    result = cli("demo", tmp_path / "d")
    assert result.exit_code == 0
    for text in ("eaglectl inspect", "eaglectl export", "Exported EAGLE3", "sglang.launch_server"):
        assert text in result.stdout


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"eaglectl {__version__}"


def test_help_lists_commands_in_workflow_order(cli):
    out = cli("--help").stdout
    positions = [out.index(f" {name} ") for name in ("inspect", "export", "token-map", "serve", "probe-target",
                                                    "demo")]
    assert positions == sorted(positions)


def test_user_error_is_one_line_without_traceback(cli, tmp_path):
    result = cli("inspect", tmp_path / "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error:") and "no such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_env_shows_traceback(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EAGLECTL_DEBUG", "1")
    result = cli("inspect", tmp_path / "nope")
    assert result.exit_code == 1 and "Traceback" in result.stderr and "CheckpointError" in result.stderr


def test_json_error_is_the_failure_envelope_and_nothing_else(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("export", tmp_path / "empty", "--json")
    assert result.exit_code == 1 and "empty directory" in result.stderr
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert doc["ok"] is False and doc["result"] is None and doc["command"] == "export"
    assert doc["error"]["type"] == "CheckpointError" and "empty directory" in doc["error"]["message"]
    assert doc["error"]["exit_code"] == 1
