"""Hub id or local path: a missing argument that reads as a local path is "no such file or directory", for the
drafter (positional or --draft) and the target (--target or TARGET) alike; a plain `org/model` stays a Hub id."""

from __future__ import annotations

import json

import pytest

from eaglectl.errors import CheckpointError
from eaglectl.hub import hub_id


@pytest.fixture
def here(tmp_path, monkeypatch):
    (tmp_path / "demo" / "specforge").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("source", ["org/model", "nvidia/Llama-3.1-8B-Eagle3", "a-b_c.d/e-f_g.h"])
def test_org_model_without_a_local_org_dir_is_a_hub_id(here, source):
    assert hub_id(source) == source


@pytest.mark.parametrize(("source", "why"), [
    ("demo/specforgee", "demo/ is a local directory"),  # a typo under an existing directory
    ("./targt", None),
    ("../targt", None),
    ("/x/target", None),
    ("~/target-that-is-not-there", None),
    ("~nosuchuser/x", None),
    ("targt", "namespace/name"),  # no namespace: not a repo id
    ("a/b/c", "namespace/name"),
    ("org/model!", "namespace/name"),  # not a valid repo id
    ("org--x/model", "namespace/name"),
    ("", None),
])
def test_anything_path_like_is_no_such_file(here, source, why):
    with pytest.raises(CheckpointError) as err:
        hub_id(source)
    assert str(err.value).startswith(f"{source}: no such file or directory")
    if why:
        assert why in str(err.value)


def test_a_local_file_as_first_component_does_not_make_a_path(here):
    (here / "org").write_text("")  # only a directory makes `org/...` a local path
    assert hub_id("org/model") == "org/model"


def test_broken_symlink_is_not_a_hub_id(here):
    (here / "org").mkdir()
    (here / "org" / "model").symlink_to(here / "gone")
    with pytest.raises(CheckpointError, match="broken symlink"):
        hub_id("org/model")


@pytest.mark.parametrize("args", [
    ("inspect", "demo/specforgee"),
    ("inspect", "./targt"),
    ("export", "demo/specforgee"),
    ("token-map", "/x/draft"),
    ("inspect", "SAMPLE", "--target", "./targt"),
    ("inspect", "SAMPLE", "--target", "/x/target"),
    ("inspect", "SAMPLE", "--target", "demo/targt"),
    ("serve", "--target", "TARGET", "--draft", "demo/specforgee", "--print-only"),
    ("serve", "--target", "./targt", "--draft", "SAMPLE", "--print-only"),
    ("serve", "--target", "/x/target", "--draft", "org/eagle3-head", "--print-only"),  # Hub draft, local target
    ("probe-target", "demo/targt", "--engine", "hf", "--compare", "none"),
])
def test_commands_refuse_a_mistyped_local_path(cli, here, samples, args):
    names = {"SAMPLE": str(samples["specforge"]), "TARGET": str(samples["target"])}
    result = cli(*(names.get(a, a) for a in args), "--json")
    assert result.exit_code == 1, result.stdout
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "CheckpointError" and "no such file or directory" in error["message"]
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_hub_ids_still_pass_through_every_command(cli, here):
    code = cli("inspect", "org/eagle3-head", "--target", "meta-llama/Llama-3.1-8B-Instruct").exit_code
    assert code == 0
    result = cli("serve", "--target", "meta-llama/Llama-3.1-8B-Instruct", "--draft", "org/eagle3-head",
                 "--print-only", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["result"]["draft_model_path"] == "org/eagle3-head"
