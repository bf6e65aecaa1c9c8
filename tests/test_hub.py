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


# --- Hub drafters: fetched through huggingface_hub, offline from a cache the test lays out as the library does ---
from tests.helpers import run_json  # noqa: E402
from tests.hub_cache import cache_dir_of, cache_repo, repo_folder, tree_bytes  # noqa: E402

COMMIT = "c0ffee" * 6 + "0123"
OTHER = "0badc0de" * 5


@pytest.fixture
def cached(hub_cache, samples):
    """Drafters and a target in the (offline) Hub cache, laid out by hand exactly as huggingface_hub writes it."""
    cache_repo(hub_cache, "org/eagle3-legacy", cache_dir_of(samples["nemo-legacy-eagle3"]), commit=COMMIT)
    cache_repo(hub_cache, "org/eagle3-ready", cache_dir_of(samples["specforge"]), commit=COMMIT)
    cache_repo(hub_cache, "org/target", cache_dir_of(samples["target"]), commit=COMMIT)
    return hub_cache


def test_cached_drafter_goes_through_inspect_export_and_serve(cli, cached, samples, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = tree_bytes(cached)
    code, doc = run_json(cli, "inspect", "org/eagle3-legacy", "--target", "org/target")
    result = doc["result"]
    assert code == 1 and result["layout"] == "nemo-legacy" and result["source"] == "org/eagle3-legacy"
    assert result["hub"]["commit"] == COMMIT and not result["hub"]["headers_only"]
    local = run_json(cli, "inspect", samples["nemo-legacy-eagle3"], "--target", samples["target"])[1]["result"]
    assert result["loader_as_is"] == local["loader_as_is"] and result["tensors"] == local["tensors"]
    assert {f["code"] for f in result["findings"]} - {"target-cached"} == {f["code"] for f in local["findings"]}

    code, doc = run_json(cli, "export", "org/eagle3-legacy")
    out = work / "eagle3-legacy-sglang"
    assert code == 0 and doc["result"]["action"] == "written" and doc["result"]["output"] == str(out)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLMEagle3"]
    expected = run_json(cli, "export", samples["nemo-legacy-eagle3"], "-o", tmp_path / "local")[1]["result"]
    assert {f["path"].rsplit("/", 1)[1]: f["bytes"] for f in doc["result"]["files"]} == {
        f["path"].rsplit("/", 1)[1]: f["bytes"] for f in expected["files"]}

    code, doc = run_json(cli, "serve", "--target", "org/target", "--draft", "org/eagle3-legacy", "--print-only")
    argv = doc["result"]["argv"]
    assert code == 0 and argv[argv.index("--speculative-draft-model-path") + 1] == str(out)
    assert argv[argv.index("--model-path") + 1] == "org/target"  # SGLang fetches the target itself
    assert doc["result"]["exported"] == "unchanged"
    assert tree_bytes(cached) == before  # the cache, byte for byte and link for link


def test_ready_hub_drafter_is_served_from_its_snapshot(cli, cached, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, doc = run_json(cli, "serve", "--target", "org/target", "--draft", "org/eagle3-ready", "--print-only")
    argv = doc["result"]["argv"]
    snapshot = repo_folder(cached, "org/eagle3-ready") / "snapshots" / COMMIT
    assert code == 0 and argv[argv.index("--speculative-draft-model-path") + 1] == str(snapshot)
    code, doc = run_json(cli, "export", "org/eagle3-ready")  # an export is a local copy, even of a ready head
    assert code == 0 and doc["result"]["output"] == str(tmp_path / "eagle3-ready-sglang")
    assert doc["result"]["action"] == "written"
    code, doc = run_json(cli, "export", "org/eagle3-ready")
    assert code == 0 and doc["result"]["action"] == "unchanged"


@pytest.mark.parametrize("where", ["snapshot", "blobs", "cache"])
def test_export_never_writes_into_the_hub_cache(cli, cached, where):
    folder = repo_folder(cached, "org/eagle3-legacy")
    out = {"snapshot": folder / "snapshots" / COMMIT / "sglang", "blobs": folder / "blobs" / "x",
           "cache": cached / "exports"}[where]
    before = tree_bytes(cached)
    result = cli("export", "org/eagle3-legacy", "-o", out, "--json")
    error = json.loads(result.stdout)["error"]
    assert result.exit_code == 1 and error["type"] == "OutputError" and "Hugging Face cache" in error["message"]
    assert tree_bytes(cached) == before


def test_revision_picks_the_cached_commit(cli, cached, samples):
    cache_repo(cached, "org/eagle3-legacy", cache_dir_of(samples["specforge"]), commit=OTHER, ref="v2")
    for revision, commit, layout in ((None, COMMIT, "nemo-legacy"), ("v2", OTHER, "sglang-ready"),
                                     (OTHER, OTHER, "sglang-ready")):
        args = ("--revision", revision) if revision else ()
        code, doc = run_json(cli, "inspect", "org/eagle3-legacy", *args)
        assert code == (1 if layout == "nemo-legacy" else 0)  # as stored, SGLang loads nothing of a NeMo head
        assert doc["result"]["hub"]["commit"] == commit and doc["result"]["layout"] == layout
        assert doc["result"]["hub"]["revision"] == revision


@pytest.mark.parametrize("args", [
    ("inspect", "org/not-cached"),
    ("export", "org/not-cached"),
    ("token-map", "org/not-cached"),
    ("serve", "--target", "org/target", "--draft", "org/not-cached", "--print-only"),
    ("inspect", "org/eagle3-legacy", "--revision", "v9"),  # cached, but not at this revision
])
def test_offline_and_not_cached_is_one_error(cli, cached, args):
    result = cli(*args)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    repo = args[args.index("--draft") + 1] if "--draft" in args else args[1]
    # no such path either (taken for a Hub id as it names no local one; with --revision it is one)
    said = "" if "v9" in args else "; as a path: no such file or directory"
    assert lines[0] == f"error: {repo}{'@v9' if 'v9' in args else ''}: not in the local Hugging Face cache, and " \
                       f"HF_HUB_OFFLINE is set{said}"
    assert lines[1:] == [f"hint: unset HF_HUB_OFFLINE, or download it first: `hf download {repo}"
                         f"{' --revision v9' if 'v9' in args else ''}`"]


def test_the_download_command_in_the_hint_quotes_the_revision(cli, cached):
    """A revision with a space or a quote (a branch name as typed) is quoted as the shell reads it back."""
    result = cli("inspect", "org/eagle3-legacy", "--revision", "it's v9")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == [
        "hint: unset HF_HUB_OFFLINE, or download it first: `hf download org/eagle3-legacy --revision 'it'\"'\"'s v9'`"]


def test_an_unreachable_hub_is_not_said_to_be_offline_mode(cli, hub_cache, monkeypatch):
    """HF_HUB_OFFLINE unset, the connection refused: the hint names the connection, not a variable to unset."""
    import huggingface_hub
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import LocalEntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def refused(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub: Connection "
                                      "refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refused)
    result = cli("export", "org/not-cached")
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: org/not-cached: cannot reach the Hub and not in the local cache (")
    assert lines[0].endswith("; as a path: no such file or directory")
    assert lines[1] == ("hint: check the connection to the Hub (and HF_ENDPOINT), or download it first: "
                        "`hf download org/not-cached`")


def test_a_snapshot_without_weights_says_so_offline(cli, hub_cache, samples):
    cache_repo(hub_cache, "org/config-only", {"config.json": (samples["specforge"] / "config.json").read_bytes()})
    result = cli("export", "org/config-only")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("error: org/config-only: the cached snapshot ")
    assert "holds no weights (found config.json), and HF_HUB_OFFLINE is set" in result.stderr


def test_a_snapshot_without_weights_online_does_not_speak_for_the_repo(cli, hub_cache, samples, monkeypatch):
    """HF_HUB_OFFLINE unset: the download may have fallen back on a cached snapshot an earlier headers-only inspect
    left (config.json alone) without saying so; the message names the snapshot too and the hint the connection."""
    import huggingface_hub
    import huggingface_hub.constants as constants

    snapshot = cache_repo(hub_cache, "org/config-only",
                          {"config.json": (samples["specforge"] / "config.json").read_bytes()})
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(snapshot))  # the cache answered
    result = cli("export", "org/config-only")
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    first, hint = result.stderr.splitlines()[:2]
    assert first.startswith("error: org/config-only: no drafter weights at the top of the repo or in its cached "
                            f"snapshot {snapshot.name} (found config.json;"), first
    assert hint.startswith("hint: if the Hub could not be reached, the cache holds only") and "hf download" in hint


def test_revision_is_for_hub_ids_only(cli, samples):
    result = cli("export", samples["specforge"], "--revision", "main")
    assert result.exit_code == 2 and "--revision applies to a Hugging Face repo id" in result.stderr


def test_hub_target_is_checked_from_the_cache_or_said_unchecked(cli, cached, samples):
    save = samples["target"] / "config.json"
    cfg = json.loads(save.read_text())
    cache_repo(cached, "org/wrong-vocab", {"config.json": json.dumps(dict(cfg, vocab_size=1000)).encode()})
    code, doc = run_json(cli, "inspect", samples["specforge"], "--target", "org/wrong-vocab")
    found = {f["code"]: f for f in doc["result"]["findings"]}
    assert code == 1 and found["target-vocab"]["severity"] == "error"
    assert "read from the local Hugging Face cache" in found["target-cached"]["message"]
    code, doc = run_json(cli, "inspect", samples["specforge"], "--target", "org/not-cached")
    found = {f["code"]: f for f in doc["result"]["findings"]}
    assert code == 0 and "not in the local Hugging Face cache" in found["target-remote"]["message"]
    assert "hf download org/not-cached config.json" in found["target-remote"]["message"]
    code, doc = run_json(cli, "serve", "--target", "org/not-cached", "--draft", samples["specforge"], "--print-only")
    assert code == 0 and any("checks against the target were skipped" in n for n in doc["result"]["notes"])


def test_env_vars_are_honoured_by_a_fresh_process(hub_cache, samples, tmp_path):
    """HF_HOME and HF_HUB_OFFLINE as a user sets them: read by huggingface_hub itself at import."""
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    cache_repo(home / "hub", "org/eagle3-legacy", cache_dir_of(samples["nemo-legacy-eagle3"]), commit=COMMIT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONPATH=os.getcwd())
    run = subprocess.run([sys.executable, "-m", "eaglectl", "export", "org/eagle3-legacy", "--json"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["result"]["output"] == str(tmp_path / "eagle3-legacy-sglang")
    run = subprocess.run([sys.executable, "-m", "eaglectl", "inspect", "org/other"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and run.stderr.startswith("error: org/other: not in the local Hugging Face cache")


# --- the requests eaglectl makes, with the network calls replaced where eaglectl calls them ---------------------
def test_download_asks_for_the_drafter_files_only(cli, hub_cache, samples, monkeypatch, tmp_path):
    import huggingface_hub

    from eaglectl.hub import DRAFTER_PATTERNS

    snapshot = cache_repo(hub_cache, "org/eagle3-legacy", cache_dir_of(samples["nemo-legacy-eagle3"]), commit=OTHER,
                          ref=None)
    calls = []

    def fake_snapshot_download(*args, **kwargs):
        calls.append((args, kwargs))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    code, doc = run_json(cli, "export", "org/eagle3-legacy", "--revision", "v1", "-o", tmp_path / "out")
    assert code == 0 and doc["result"]["action"] == "written"
    assert calls == [(("org/eagle3-legacy",), {"repo_type": "model", "revision": "v1",
                                               "allow_patterns": DRAFTER_PATTERNS, "ignore_patterns": ["*/*"]})]


def test_the_patterns_keep_exactly_a_drafters_files():
    from huggingface_hub.utils import filter_repo_objects

    from eaglectl.hub import DRAFTER_PATTERNS, SUBFOLDERS

    repo = ["config.json", "model.safetensors", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
            "pytorch_model.bin", "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json",
            "draft_model.pt", "eagle_meta.pt", "eagle3_meta.pt", "eagle1_meta.pt", "speculative_token_map.pt",
            "README.md", ".gitattributes", "tokenizer.json", "generation_config.json", "optimizer.pt",
            "training_args.bin", "target/model.safetensors", "epoch_0_step_1/model/config.json", "logs/config.json"]
    kept = list(filter_repo_objects(repo, allow_patterns=DRAFTER_PATTERNS, ignore_patterns=SUBFOLDERS))
    assert kept == repo[:12]


def _remote_metadata(directory):
    """What get_safetensors_metadata returns for a repo holding `directory`'s model.safetensors, built with the
    library's own classes from the file's header."""
    import struct

    from huggingface_hub.utils import SafetensorsFileMetadata, SafetensorsRepoMetadata, TensorInfo

    raw = (directory / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    fm = SafetensorsFileMetadata(metadata=meta, tensors={k: TensorInfo(**v) for k, v in header.items()})
    return SafetensorsRepoMetadata(metadata=None, sharded=False, weight_map={k: "model.safetensors" for k in header},
                                   files_metadata={"model.safetensors": fm})


@pytest.fixture
def online(monkeypatch):
    """The Hub reachable as far as eaglectl can tell (every network call is replaced by the test)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")


def _fake_hub(monkeypatch, files: dict, metadata, calls: list, snapshot=None):
    from types import SimpleNamespace

    import huggingface_hub

    def model_info(self, repo_id, **kwargs):
        calls.append(("model_info", repo_id, kwargs))
        siblings = [SimpleNamespace(rfilename=f, size=p.stat().st_size) for f, p in files.items()]
        return SimpleNamespace(sha=OTHER, siblings=siblings)

    def hf_hub_download(repo_id, filename, **kwargs):
        calls.append(("hf_hub_download", repo_id, filename, kwargs))
        return str(files[filename])

    def get_safetensors_metadata(repo_id, **kwargs):
        calls.append(("get_safetensors_metadata", repo_id, kwargs))
        return metadata

    def snapshot_download(repo_id, **kwargs):
        calls.append(("snapshot_download", repo_id, kwargs))
        assert snapshot is not None, "weights downloaded"
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    for name, fn in (("hf_hub_download", hf_hub_download), ("get_safetensors_metadata", get_safetensors_metadata),
                     ("snapshot_download", snapshot_download)):
        monkeypatch.setattr(huggingface_hub, name, fn)


def test_inspect_reads_headers_without_downloading_weights(cli, hub_cache, samples, online, monkeypatch):
    d = samples["specforge"]
    snapshot = cache_repo(hub_cache, "org/head", {"config.json": (d / "config.json").read_bytes()}, commit=OTHER,
                          ref=None)  # what hf_hub_download leaves: config.json only
    files = {"config.json": snapshot / "config.json", "model.safetensors": d / "model.safetensors",
             "README.md": d / "config.json", "extra/model.safetensors": d / "model.safetensors"}
    calls: list = []
    _fake_hub(monkeypatch, files, _remote_metadata(d), calls)
    code, doc = run_json(cli, "inspect", "org/head", "--revision", "v1")
    assert code == 0, doc
    assert calls == [("model_info", "org/head", {"revision": "v1", "files_metadata": True}),
                     ("hf_hub_download", "org/head", "config.json", {"repo_type": "model", "revision": OTHER}),
                     ("get_safetensors_metadata", "org/head", {"repo_type": "model", "revision": OTHER})]
    remote, local = doc["result"], run_json(cli, "inspect", d)[1]["result"]
    assert remote["layout"] == "hub" and remote["hub"]["headers_only"] and remote["hub"]["commit"] == OTHER
    for key in ("tensors", "loader_as_is", "sglang", "config", "algorithm", "sglang_ready"):
        assert remote[key] == local[key], key
    found = {f["code"]: f for f in remote["findings"]}
    assert set(found) == {f["code"] for f in local["findings"]} | {"headers-only"}
    assert "NaN / Inf values" in found["headers-only"]["message"] and "d2t" in found["headers-only"]["message"]
    assert found["headers-only"]["fix"] == "`eaglectl export org/head --revision v1` downloads the drafter's files " \
                                           "and checks them all"
    text = cli("inspect", "org/head", "--revision", "v1").stdout
    squeezed = "".join(c for c in text if not c.isspace() and c != "│")  # the table wraps the cell
    assert f"org/head@v1(commit{OTHER};headersreadremotely)" in squeezed


def test_inspect_downloads_meta_files_but_not_weights(cli, hub_cache, samples, online, monkeypatch):
    """A NeMo consolidated model/ published as a repo: its meta beside the weights is fetched (it is small)."""
    d = samples["nemo-consolidated"]
    snapshot = cache_repo(hub_cache, "org/head", {"config.json": (d / "model" / "config.json").read_bytes(),
                                                  "eagle_meta.pt": (d / "eagle_meta.pt").read_bytes()},
                          commit=OTHER, ref=None)
    files = {"config.json": snapshot / "config.json", "eagle_meta.pt": snapshot / "eagle_meta.pt",
             "model.safetensors": d / "model" / "model.safetensors"}
    calls: list = []
    _fake_hub(monkeypatch, files, _remote_metadata(d / "model"), calls)
    code, doc = run_json(cli, "inspect", "org/head")
    assert [c[0] for c in calls] == ["model_info", "hf_hub_download", "hf_hub_download", "get_safetensors_metadata"]
    assert calls[2][2] == "eagle_meta.pt"
    assert doc["result"]["paths"]["meta"] == str(snapshot / "eagle_meta.pt")
    assert "missing-d2t" in {f["code"] for f in doc["result"]["findings"]}  # d2t is built from the meta on export


def test_inspect_of_pickled_weights_downloads_them(cli, hub_cache, samples, online, monkeypatch):
    d = samples["nemo-legacy-eagle3"]
    snapshot = cache_repo(hub_cache, "org/legacy", cache_dir_of(d), commit=OTHER, ref=None)
    calls: list = []
    _fake_hub(monkeypatch, {n: snapshot / n for n in cache_dir_of(d)}, None, calls, snapshot=snapshot)
    code, doc = run_json(cli, "inspect", "org/legacy")
    assert code == 1 and doc["result"]["layout"] == "nemo-legacy" and not doc["result"]["hub"]["headers_only"]
    assert [c[0] for c in calls] == ["model_info", "snapshot_download"]


def test_a_malformed_remote_header_is_one_error(cli, hub_cache, samples, online, monkeypatch):
    d = samples["specforge"]
    snapshot = cache_repo(hub_cache, "org/head", {"config.json": (d / "config.json").read_bytes()}, commit=OTHER,
                          ref=None)
    metadata = _remote_metadata(d)
    info = metadata.files_metadata["model.safetensors"].tensors["fc.weight"]
    info.data_offsets = (0, 3)  # not what its dtype and shape need
    _fake_hub(monkeypatch, {"config.json": snapshot / "config.json", "model.safetensors": d / "model.safetensors"},
              metadata, [])
    result = cli("inspect", "org/head")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: model.safetensors: tensor 'fc.weight' spans 3 bytes but ")


def test_hub_errors_are_one_line(cli, online, monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import RepositoryNotFoundError

    def model_info(self, repo_id, **kwargs):
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # as raised for a 404 (no response here)
        Exception.__init__(error, "404 Client Error. Repository Not Found for url: https://huggingface.co/x")
        raise error

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    result = cli("inspect", "org/nope")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == ("error: org/nope: no such model repo on the Hub (or it is private); as a "
                                             "path: no such file or directory")


@pytest.mark.parametrize("failure", ["connect", "timeout", "server-error", "401", "403", "404", "429"])
def test_inspect_of_a_cached_drafter_falls_back_to_the_cache_when_the_hub_is_unreachable(cli, cached, samples,
                                                                                         online, monkeypatch,
                                                                                         tmp_path, failure):
    """As export and token-map do (huggingface_hub's download falls back to the cache on every failure but an
    unknown revision): inspect reads the cached snapshot, not an error line. 401 / 403 / 404 / 429: an expired
    token, a proxy that refuses, a repo made private since it was cached, a rate limit."""
    import huggingface_hub
    from huggingface_hub.utils import HfHubHTTPError, RepositoryNotFoundError

    httpx = pytest.importorskip(type(huggingface_hub.utils.get_session()).__module__.split(".")[0])
    calls: list = []

    def unreachable(self, repo_id, **kwargs):
        calls.append(repo_id)
        request = httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
        if failure == "connect":
            raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution", request=request)
        if failure == "timeout":
            raise httpx.ConnectTimeout("timed out", request=request)
        if failure == "404":
            raise RepositoryNotFoundError("404 Repository Not Found", response=httpx.Response(404, request=request))
        status = 504 if failure == "server-error" else int(failure)
        raise HfHubHTTPError(f"{status} Client Error", response=httpx.Response(status, request=request))

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", unreachable)
    monkeypatch.chdir(tmp_path)
    code, doc = run_json(cli, "inspect", "org/eagle3-ready")
    assert code == 0, doc
    assert calls and doc["result"]["layout"] == "sglang-ready" and doc["result"]["hub"]["commit"] == COMMIT
    local = run_json(cli, "inspect", samples["specforge"])[1]["result"]
    assert doc["result"]["tensors"] == local["tensors"]
    assert run_json(cli, "export", "org/eagle3-legacy", "--dry-run")[0] == 0  # as export does


@pytest.mark.parametrize("args", [
    ("inspect", "~nosuchuser-eaglectl/x"),
    ("inspect", "SAMPLE", "--target", "~nosuchuser-eaglectl/t"),
    ("export", "~nosuchuser-eaglectl/x"),
    ("export", "SAMPLE", "-o", "~nosuchuser-eaglectl/out"),
    ("token-map", "~nosuchuser-eaglectl/x"),
    ("token-map", "LEGACY", "-o", "~nosuchuser-eaglectl/tm.pt"),
    ("serve", "--target", "~nosuchuser-eaglectl/t", "--draft", "SAMPLE", "--print-only"),
    ("serve", "--target", "TARGET", "--draft", "~nosuchuser-eaglectl/d", "--print-only"),
    ("bench", "--target", "~nosuchuser-eaglectl/t", "--draft", "SAMPLE", "--print-only"),
    ("probe-target", "~nosuchuser-eaglectl/t", "--engine", "hf", "--compare", "none"),
    ("demo", "~nosuchuser-eaglectl/x"),
    ("inspect", "TRAINING", "--draft-config", "~nosuchuser-eaglectl/config.json"),
    ("export", "TRAINING", "--draft-config", "~nosuchuser-eaglectl/config.json"),
    ("export", "SAMPLE", "--format", "speculators", "--verifier", "~nosuchuser-eaglectl/model", "--dry-run"),
])
def test_a_home_of_no_such_user_is_no_such_file(cli, here, samples, args):
    """`~models/x` where no user `models` exists: pathlib raises RuntimeError; every command says what it is."""
    names = {"SAMPLE": str(samples["specforge"]), "TARGET": str(samples["target"]),
             "LEGACY": str(samples["nemo-legacy-eagle3"]), "TRAINING": str(samples["specforge-training"])}
    before = sorted(p.name for p in here.iterdir())
    result = cli(*(names.get(a, a) for a in args))
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ~nosuchuser-eaglectl/") and "no such file or directory" in result.stderr
    assert "there is no user 'nosuchuser-eaglectl'" in result.stderr
    assert sorted(p.name for p in here.iterdir()) == before  # demo made no `~nosuchuser-eaglectl` directory here


TOO_LONG = "n" * 300  # one component longer than any file system takes (ENAMETOOLONG on the first stat)


@pytest.mark.parametrize("args", [
    ("inspect", "SAMPLE", "--target", f"/tmp/{TOO_LONG}"),
    ("inspect", "SAMPLE", "--target", f"/tmp/{TOO_LONG}/target"),
    ("serve", "--target", f"/tmp/{TOO_LONG}", "--draft", "SAMPLE", "--print-only"),
    ("serve", "--engine", "vllm", "--target", f"/tmp/{TOO_LONG}", "--draft", "SAMPLE", "--print-only"),
    ("bench", "--target", f"/tmp/{TOO_LONG}", "--draft", "SAMPLE", "--print-only"),
    ("probe-target", f"/tmp/{TOO_LONG}", "--engine", "hf", "--compare", "none"),
    ("export", "SAMPLE", "--format", "speculators", "--verifier", f"/tmp/{TOO_LONG}", "--dry-run"),
    ("inspect", "TRAINING", "--draft-config", f"/tmp/{TOO_LONG}/config.json"),
])
def test_a_path_the_file_system_cannot_take_is_one_error_line(cli, here, samples, args):
    """A --target, --verifier or --draft-config whose name is too long to stat: pathlib raises OSError from
    `exists()` / `is_dir()`; each says which path cannot be accessed, and why."""
    names = {"SAMPLE": str(samples["specforge"]), "TRAINING": str(samples["specforge-training"])}
    result = cli(*(names.get(a, a) for a in args))
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and "File name too long" in result.stderr, result.stderr
    assert not result.stdout


@pytest.mark.parametrize("args", [
    ("inspect", "demoo/specforge"),
    ("inspect", "DEMO/specforge"),  # a case-only typo: no close match by difflib's measure
    ("export", "dem/specforge"),
    ("token-map", "demp/specforge"),
    ("serve", "--target", "TARGET", "--draft", "deom/specforge", "--print-only"),
    ("serve", "--target", "demoo/specforge", "--draft", "SAMPLE", "--print-only"),
    ("probe-target", "demoo/specforge", "--engine", "hf", "--compare", "none"),
])
def test_a_typo_in_the_first_component_is_no_hub_id_and_the_close_match_is_named(cli, here, samples, args):
    """`eaglctl-demo/specforge` beside `eaglectl-demo/`: a path with a typo, not a repo id to download."""
    names = {"SAMPLE": str(samples["specforge"]), "TARGET": str(samples["target"])}
    result = cli(*(names.get(a, a) for a in args), "--json")
    assert result.exit_code == 1, result.stdout
    error = json.loads(result.stdout)["error"]
    assert "no such file or directory" in error["message"] and "did you mean demo/specforge?" in error["message"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("source", ["demoo/model", "org/specforge", "dem/x/specforge"])
def test_a_near_name_alone_leaves_a_hub_id_alone(here, source):
    """Only the whole corrected path existing makes a typo: `demoo/model` may be a Hub namespace."""
    if source.count("/") == 1:
        assert hub_id(source) == source
    else:
        with pytest.raises(CheckpointError, match="namespace/name"):
            hub_id(source)
