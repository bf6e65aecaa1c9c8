"""The output rules (`eaglectl.export.outputs`) through every command that writes: export, token-map, serve, demo.

Each refusal: exit 1, exactly one `error:` line (and maybe a `hint:`), no traceback, nothing on stdout, and the
whole test directory — source checkpoint, the refused output, everything beside them — byte-for-byte and
mtime-for-mtime as it was (so no staging directory and no lock file is left either). Each success: the source
checkpoint byte-identical, nothing written outside the output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from eaglectl.errors import OutputError
from eaglectl.export.atomic import LOCK_TAG, OLD_TAG, STAGE_TAG, exclusive_lock
from eaglectl.export.outputs import MANIFEST, read_regular
from eaglectl.export.token_map import TOKEN_MAP, is_own_token_map, token_map_bytes
from tests.helpers import run_json
from tests.test_hostile_inputs import snapshot


def assert_refused(result, *expect: str) -> None:
    where = f"stdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exit_code == 1, where
    assert "Traceback" not in result.stderr and result.stdout == "", where
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and all(line.startswith(("error:", "hint:", "warning:")) for line in lines), where
    for text in expect:
        assert text in errors[0], where


def refused_and_untouched(cli, root: Path, *args, expect: str) -> None:
    before = snapshot(root)
    assert_refused(cli(*args), expect)
    assert snapshot(root) == before


def without(snap: dict, prefix: str) -> dict:
    return {k: v for k, v in snap.items() if k != prefix and not k.startswith(prefix + os.sep)}


def temp_names(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if STAGE_TAG in p.name or OLD_TAG in p.name or LOCK_TAG in p.name]


# ----------------------------------------------------------------------------------------- default outputs
@pytest.mark.parametrize("key", ["nemo-consolidated", "nemo-legacy-eagle3", "nemo-sharded", "nemo-legacy-eagle"])
def test_default_export_is_a_new_sglang_dir_beside_the_checkpoint(cli, samples, key):
    d = samples[key]
    before = snapshot(d)
    code, doc = run_json(cli, "export", d)
    assert code == 0, doc
    assert Path(doc["result"]["output"]) == (d / "sglang").resolve()
    assert without(snapshot(d), "sglang") == before  # no file of the checkpoint modified, none added beside
    listed = json.loads((d / "sglang" / MANIFEST).read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in (d / "sglang").iterdir())  # the manifest lists what it wrote


def test_default_export_of_a_checkpoint_whose_model_entry_is_a_link_to_itself(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    (d / "model").symlink_to(".")
    before = snapshot(d)
    code, doc = run_json(cli, "export", d)
    assert code == 0, doc
    assert without(snapshot(d), "sglang") == before and (d / "draft_model.pt").is_file()
    refused_and_untouched(cli, d.parent, "export", d, "-o", d / "model", expect="is a directory of the source")


@pytest.mark.parametrize("link", [".", "model"])
def test_a_default_output_that_links_into_the_checkpoint_is_refused(cli, samples, tmp_path, link):
    d = samples["nemo-consolidated"]
    (d / "sglang").symlink_to(link)
    refused_and_untouched(cli, tmp_path, "export", d, expect="is a directory of the source")
    refused_and_untouched(cli, tmp_path, "serve", "--target", samples["target"], "--draft", d, "--print-only",
                          expect="is a directory of the source")


def test_sglang_ready_dir_is_verified_not_written_and_force_writes_beside(cli, samples):
    d = samples["specforge"]
    before = snapshot(d)
    code, doc = run_json(cli, "export", d)
    assert code == 0 and doc["result"]["action"] == "unchanged" and snapshot(d) == before
    code, doc = run_json(cli, "export", d, "--force")
    assert code == 0 and doc["result"]["action"] == "written"
    assert Path(doc["result"]["output"]) == (d / "sglang").resolve()
    assert without(snapshot(d), "sglang") == before


# ------------------------------------------------------------------------------- never over / around a source
@pytest.mark.parametrize("where", ["itself", "parent", "dot", "empty-string", "link-to-it", "its-model-dir",
                                   "inside-a-weight-file"])
def test_output_over_or_around_the_source_is_refused(cli, samples, tmp_path, monkeypatch, where):
    run = tmp_path / "run"
    run.mkdir()
    ck = run / "ck"
    shutil.copytree(samples["nemo-consolidated"], ck)
    (tmp_path / "link").symlink_to(ck)
    monkeypatch.chdir(run)
    out, expect = {
        "itself": (ck, "is a directory of the source"),
        "parent": (run, "contains the source checkpoint"),
        "dot": (".", "contains the source checkpoint"),
        "empty-string": ("", "contains the source checkpoint"),
        "link-to-it": (tmp_path / "link", "is a directory of the source"),
        "its-model-dir": (ck / "model", "is a directory of the source"),
        "inside-a-weight-file": (ck / "model" / "model.safetensors" / "x", "lies inside the source file"),
    }[where]
    for force in ([], ["--force"]):
        refused_and_untouched(cli, tmp_path, "export", ck, "-o", out, *force, expect=expect)
        refused_and_untouched(cli, tmp_path, "export", ck, "-o", out, "--dry-run", expect=expect)


def test_source_named_like_a_leftover_of_the_output_is_refused(cli, samples, tmp_path):
    """The next run removes `.<out>.eaglectl-stage-*` beside the output: a source with that name must not be one."""
    ck = tmp_path / f".out{STAGE_TAG}abc"
    shutil.copytree(samples["nemo-legacy-eagle3"], ck)
    refused_and_untouched(cli, tmp_path, "export", ck, "-o", tmp_path / "out",
                          expect="has the name of eaglectl's temporary files")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_token_map_over_a_source_file_is_refused(cli, samples, tmp_path, name):
    ck = samples["specforge"]
    refused_and_untouched(cli, tmp_path, "token-map", ck, "-o", ck / name, expect="is a file of the source checkpoint")


def test_token_map_through_a_symlink_to_a_source_file_is_refused(cli, samples, tmp_path):
    ck = samples["specforge"]
    (tmp_path / "tm.pt").symlink_to(ck / "model.safetensors")
    refused_and_untouched(cli, tmp_path, "token-map", ck, "-o", tmp_path / "tm.pt",
                          expect="is a file of the source checkpoint")


# ------------------------------------------------------------------------------------- replace only our own
def test_foreign_directory_is_refused_even_with_force(cli, samples, tmp_path):
    out = tmp_path / "unrelated"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine\n")
    (out / "sub" / "more.txt").write_text("also mine\n")
    for extra in ([], ["--force"], ["--dry-run"]):
        refused_and_untouched(cli, tmp_path, "export", samples["specforge"], "-o", out, *extra,
                              expect="not an eaglectl export")


@pytest.mark.parametrize("intruder", ["file", "dir", "symlink"])
def test_eaglectl_export_with_something_else_in_it_is_refused(cli, samples, tmp_path, intruder):
    out = tmp_path / "out"
    assert cli("export", samples["nemo-legacy-eagle3"], "-o", out).exit_code == 0
    if intruder == "file":
        (out / "README.md").write_text("my notes about this export\n")
    elif intruder == "dir":
        (out / "eval").mkdir()
        (out / "eval" / "results.json").write_text("{}")
    else:  # a listed name that is not a regular file
        (out / "config.json").unlink()
        (out / "config.json").symlink_to(tmp_path / "elsewhere.json")
    for extra in ([], ["--force"]):
        refused_and_untouched(cli, tmp_path, "export", samples["nemo-legacy-eagle3"], "-o", out, *extra,
                              expect="which the eaglectl export there did not write")


def test_previous_eaglectl_export_is_replaced(cli, samples, tmp_path):
    out = tmp_path / "out"
    assert cli("export", samples["nemo-legacy-eagle3"], "-o", out).exit_code == 0
    source = snapshot(samples["nemo-consolidated"])
    code, doc = run_json(cli, "export", samples["nemo-consolidated"], "-o", out)  # another source: replaced
    assert code == 0 and doc["result"]["action"] == "written", doc
    assert (out / "model.safetensors").is_file() and snapshot(samples["nemo-consolidated"]) == source
    code, doc = run_json(cli, "export", samples["nemo-consolidated"], "-o", out, "--force")
    assert code == 0 and doc["result"]["action"] == "written"
    assert temp_names(tmp_path) == []


def test_export_of_an_older_eaglectl_without_a_file_list(cli, samples, tmp_path):
    """Older manifests list no files: replaced only when nothing but the names exports write is there."""
    out = tmp_path / "out"
    assert cli("export", samples["nemo-legacy-eagle3"], "-o", out, "--max-shard-size", "60KB").exit_code == 0
    manifest = json.loads((out / MANIFEST).read_text())
    del manifest["files"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / TOKEN_MAP).write_bytes(token_map_bytes(torch.arange(5)))
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1
    (out / "notes.txt").write_text("x")
    refused_and_untouched(cli, tmp_path, "export", samples["nemo-legacy-eagle3"], "-o", out, "--force",
                          expect="'notes.txt'")
    (out / "notes.txt").unlink()
    code, doc = run_json(cli, "export", samples["nemo-legacy-eagle3"], "-o", out, "--force")
    assert code == 0 and doc["result"]["action"] == "written", doc


@pytest.mark.parametrize("manifest", ["fifo", "symlink", "huge", "not-json", "deep", "bad-file-list", "foreign"])
def test_a_manifest_eaglectl_did_not_write_makes_the_directory_foreign(cli, samples, tmp_path, manifest):
    out = tmp_path / "out"
    assert cli("export", samples["nemo-legacy-eagle3"], "-o", out).exit_code == 0
    path = out / MANIFEST
    doc = json.loads(path.read_text())
    path.unlink()
    if manifest == "fifo":  # read, it would block forever
        os.mkfifo(path)
    elif manifest == "symlink":
        (tmp_path / "real.json").write_text(json.dumps(doc))
        path.symlink_to(tmp_path / "real.json")
    elif manifest == "huge":
        path.write_text(json.dumps({**doc, "pad": "x" * (5 * 1024 * 1024)}))
    elif manifest == "not-json":
        path.write_text("{" * 10)
    elif manifest == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif manifest == "bad-file-list":
        path.write_text(json.dumps({**doc, "files": ["../../etc", "config.json"]}))
    else:
        path.write_text(json.dumps({"made_by": "someone else"}))
    result = []
    worker = threading.Thread(target=lambda: result.append(
        cli("export", samples["nemo-legacy-eagle3"], "-o", out, "--force")), daemon=True)
    before = snapshot(tmp_path)
    worker.start()
    worker.join(60)
    assert result, "export hung on the manifest"
    assert_refused(result[0], "not an eaglectl export")
    assert snapshot(tmp_path) == before


def test_an_empty_directory_is_written_into(cli, samples, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    code, doc = run_json(cli, "export", samples["nemo-legacy-eagle3"], "-o", out)
    assert code == 0 and doc["result"]["action"] == "written" and (out / "model.safetensors").is_file()


def test_a_file_dropped_into_the_output_during_the_export_survives(cli, samples, tmp_path, monkeypatch):
    """Checked again just before the swap: what appeared meanwhile is not deleted with the old export."""
    from eaglectl.export import exporter as export_mod

    out = tmp_path / "out"
    assert cli("export", samples["nemo-legacy-eagle3"], "-o", out).exit_code == 0
    real = export_mod._write_all

    def write_then_drop(*args, **kwargs):
        written = real(*args, **kwargs)
        (out / "results.txt").write_text("evaluation I just saved\n")
        return written

    monkeypatch.setattr(export_mod, "_write_all", write_then_drop)
    result = cli("export", samples["nemo-legacy-eagle3"], "-o", out, "--force")
    assert_refused(result, "'results.txt'")
    assert (out / "results.txt").read_text() == "evaluation I just saved\n" and (out / MANIFEST).is_file()
    assert temp_names(tmp_path) == []


def test_token_map_replaces_only_its_own(cli, samples, tmp_path):
    ck = samples["nemo-consolidated"]
    out = tmp_path / "tm.pt"
    out.write_text("my notes\n")
    refused_and_untouched(cli, tmp_path, "token-map", ck, "-o", out, expect="not a token map eaglectl wrote")
    torch.save(torch.arange(128), out)  # a token map, but not one eaglectl wrote (other zip records)
    refused_and_untouched(cli, tmp_path, "token-map", ck, "-o", out, expect="not a token map eaglectl wrote")
    out.unlink()
    os.mkfifo(out)
    refused_and_untouched(cli, tmp_path, "token-map", ck, "-o", out, expect="not a regular file")
    out.unlink()
    out.write_bytes(token_map_bytes(torch.arange(3)))  # eaglectl's, for another checkpoint: replaced
    code, doc = run_json(cli, "token-map", ck, "-o", out)
    assert code == 0, doc
    meta = torch.load(ck / "eagle_meta.pt", weights_only=True)
    assert torch.equal(torch.load(out, weights_only=True), meta["selected_token_ids"])
    assert run_json(cli, "token-map", ck, "-o", out)[0] == 0  # and again (its own output)
    assert temp_names(tmp_path) == []


def test_own_token_map_recognition_reads_no_pickle():
    good = token_map_bytes(torch.arange(10))
    assert is_own_token_map(good)
    assert not is_own_token_map(good[:-1]) and not is_own_token_map(good + b"\0") and not is_own_token_map(b"")
    flipped = bytearray(good)
    flipped[good.index(b"torch._utils")] ^= 1  # one byte of the pickle changed
    assert not is_own_token_map(bytes(flipped))


# --------------------------------------------------------------------------------------- earlier exports
def _old_in_place_export(cli, d: Path, tmp_path: Path) -> None:
    """What eaglectl did before: the NeMo consolidated model/ replaced by its export."""
    staged = tmp_path / "old-export"
    assert cli("export", d, "-o", staged).exit_code == 0
    shutil.rmtree(d / "model")
    shutil.copytree(staged, d / "model")
    manifest = json.loads((d / "model" / MANIFEST).read_text())
    del manifest["files"]  # older versions listed none
    (d / "model" / MANIFEST).write_text(json.dumps(manifest))


def test_an_earlier_in_place_export_is_reported_and_not_rewritten(cli, samples, tmp_path):
    d = samples["nemo-consolidated"]
    _old_in_place_export(cli, d, tmp_path)
    before = snapshot(d)
    code, doc = run_json(cli, "export", d)
    assert code == 0 and doc["result"]["action"] == "unchanged", doc
    assert any("earlier eaglectl wrote in place" in n for n in doc["result"]["notes"])
    assert snapshot(d) == before
    code, doc = run_json(cli, "serve", "--target", samples["target"], "--draft", d, "--print-only")
    assert code == 0 and any("earlier eaglectl wrote in place" in n for n in doc["result"]["notes"])
    assert snapshot(d) == before


def test_an_earlier_model_export_beside_a_checkpoint_is_reported(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    assert cli("export", d, "-o", d / "model").exit_code == 0  # where earlier versions put it
    code, doc = run_json(cli, "export", d)
    assert code == 0 and Path(doc["result"]["output"]) == (d / "sglang").resolve()
    assert any("default output was model/ then" in n for n in doc["result"]["notes"])


# ------------------------------------------------------------------------------------------ serve and demo
def test_serve_print_only_refuses_what_its_export_would_refuse(cli, samples, tmp_path):
    d = samples["nemo-consolidated"]
    (d / "sglang").mkdir()
    (d / "sglang" / "notes.txt").write_text("mine\n")
    refused_and_untouched(cli, tmp_path, "serve", "--target", samples["target"], "--draft", d, "--print-only",
                          expect="not an eaglectl export")


def test_serve_print_only_names_an_up_to_date_export(cli, samples):
    d = samples["nemo-consolidated"]
    assert cli("export", d).exit_code == 0
    code, doc = run_json(cli, "serve", "--target", samples["target"], "--draft", d, "--print-only")
    assert code == 0 and doc["result"]["exported"] == "unchanged"
    assert doc["result"]["draft_model_path"] == str((d / "sglang").resolve())
    assert any("already holds this drafter's export" in n for n in doc["result"]["notes"])


def test_demo_leaves_its_sample_as_nemo_wrote_it(cli, tmp_path):
    result = cli("demo", tmp_path / "demo", "--json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)["result"]
    epoch = Path(r["inspected"])
    assert json.loads((epoch / "model" / "config.json").read_text())["architectures"] == ["LlamaEagle3DraftModel"]
    assert Path(r["export"]["output"]) == (epoch / "sglang").resolve()
    argv = r["serve_command"].split()
    assert argv[argv.index("--speculative-draft-model-path") + 1] == str((epoch / "sglang").resolve())
    assert temp_names(tmp_path) == []


def test_demo_refuses_a_directory_in_use(cli, tmp_path):
    used = tmp_path / "work"
    (used / "target").mkdir(parents=True)
    (used / "target" / "config.json").write_text('{"mine": true}')
    refused_and_untouched(cli, tmp_path, "demo", used, expect="is not empty")


# ------------------------------------------------------------------------------------------------- locks
@pytest.mark.parametrize("command", ["export", "token-map"])
def test_no_lock_file_is_left_behind(cli, samples, tmp_path, command):
    out = tmp_path / ("out" if command == "export" else "tm.pt")
    for _ in range(2):
        assert cli(command, samples["nemo-consolidated"], "-o", out).exit_code == 0
        assert temp_names(tmp_path) == []


def test_a_stale_lock_of_a_killed_run_is_reused_and_removed(cli, samples, tmp_path):
    (tmp_path / f".out{LOCK_TAG}").write_bytes(b"")
    assert cli("export", samples["nemo-legacy-eagle3"], "-o", tmp_path / "out").exit_code == 0
    assert temp_names(tmp_path) == []


@pytest.mark.parametrize("lock", ["dangling-symlink", "symlink-to-file", "fifo", "not-empty", "directory"])
@pytest.mark.parametrize("command", ["export", "token-map"])
def test_a_lock_file_that_is_not_a_plain_empty_file_is_refused(cli, samples, tmp_path, lock, command):
    out = tmp_path / "box" / ("out" if command == "export" else "tm.pt")
    out.parent.mkdir()
    path = out.parent / f".{out.name}{LOCK_TAG}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if lock == "dangling-symlink":
        path.symlink_to(elsewhere / "created")
    elif lock == "symlink-to-file":
        (elsewhere / "file").write_bytes(b"")
        path.symlink_to(elsewhere / "file")
    elif lock == "fifo":
        os.mkfifo(path)
    elif lock == "not-empty":
        path.write_text("someone's data\n")
    else:
        path.mkdir()
    expect = "symlink" if "symlink" in lock else "not an eaglectl lock"
    refused_and_untouched(cli, tmp_path, command, samples["nemo-consolidated"], "-o", out, expect=expect)
    assert not (elsewhere / "created").exists()


def test_lock_is_exclusive_across_release_and_reacquire(tmp_path):
    dest = tmp_path / "out"
    with exclusive_lock(dest) as lock:
        assert lock.is_file()
        with pytest.raises(OutputError, match="another eaglectl process"), exclusive_lock(dest):
            pass
    assert not lock.exists()
    with exclusive_lock(dest):
        assert lock.is_file()
    assert not lock.exists()


def test_read_regular_refuses_what_is_not_a_small_regular_file(tmp_path):
    (tmp_path / "f").write_bytes(b"12345")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    assert read_regular(tmp_path / "f", 5) == b"12345" and read_regular(tmp_path / "f", 4) is None
    assert read_regular(tmp_path / "fifo", 10) is None and read_regular(tmp_path / "link", 10) is None
    assert read_regular(tmp_path / "absent", 10) is None and read_regular(tmp_path, 10) is None


# ------------------------------------------------------------------- the source seen through another path
def _in_mount_namespace(*script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` (shell lines) in a private mount namespace (`unshare -rm`: no root needed where user namespaces
    are allowed; the mounts vanish with it). Skips where the system refuses namespaces or bind mounts."""

    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                                       os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount --bind \"$d\" \"$d\""],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private bind mounts here: {probe.stderr.strip()}")
    lines = "\n".join(script).replace("EAGLECTL", f"'{sys.executable}' -m eaglectl")
    return subprocess.run(["unshare", "-rm", "sh", "-c", lines], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize(("out", "expect"), [
    ("bind/sglang", "is the directory"),  # the source export itself, through the bind mount
    ("bind", "contains the source checkpoint"),  # the directory holding it
    ("/proc/self/root{tmp}/bind/sglang", "is the directory"),
])
def test_an_output_that_is_the_source_through_a_bind_mount_is_refused(cli, samples, tmp_path, out, expect):
    ck = samples["nemo-legacy-eagle3"]
    assert cli("export", ck).exit_code == 0  # ck/sglang: an eaglectl export, the source of the next one
    (tmp_path / "bind").mkdir()
    before = snapshot(ck)
    done = _in_mount_namespace(f"cd '{tmp_path}' && mount --bind '{ck}' bind || exit 99",
                               f"EAGLECTL export '{ck / 'sglang'}' -o '{out.format(tmp=tmp_path)}' --force")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and expect in done.stderr and "seen through another path" in done.stderr
    assert snapshot(ck) == before and temp_names(tmp_path) == []


# ------------------------------------------------------------------------- an output that is a mount point
def test_an_empty_mount_point_is_written_into_on_its_own_file_system(samples, tmp_path):
    ck = samples["nemo-legacy-eagle3"]
    work = tmp_path / "w"
    (work / "mnt").mkdir(parents=True)
    done = _in_mount_namespace(f"cd '{work}' && mount -t tmpfs -o size=8m tmpfs mnt || exit 99",
                               f"EAGLECTL export '{ck}' -o mnt --json > out.json || exit $?",
                               "ls -A mnt; echo ---; ls -A",
                               f"EAGLECTL export '{ck}' -o mnt --force --dtype float32 > /dev/null || exit $?",
                               "ls -A mnt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    first, rest = done.stdout.split("---\n")
    beside, second = rest.split("mnt\nout.json\n")
    assert first.split() == ["config.json", MANIFEST, "model.safetensors"]  # nothing of eaglectl's own left inside
    assert beside == "" and second.split() == first.split()  # nor beside it (staging, lock)
    assert json.loads((work / "out.json").read_text())["result"]["action"] == "written"


def test_a_full_mount_point_says_nothing_was_written(samples, tmp_path):
    ck = samples["nemo-legacy-eagle3"]
    (tmp_path / "mnt").mkdir()
    done = _in_mount_namespace(f"cd '{tmp_path}' && mount -t tmpfs -o size=64k tmpfs mnt || exit 99",
                               f"EAGLECTL export '{ck}' -o mnt; echo rc=$?; ls -A mnt")
    assert "rc=1\n" in done.stdout and done.stdout.endswith("rc=1\n"), done.stdout + done.stderr  # mnt left empty
    assert "write failed (No space left on device); nothing written" in done.stderr
    assert "Traceback" not in done.stderr and temp_names(tmp_path) == []


@pytest.fixture
def mount_point(tmp_path, monkeypatch) -> Path:
    """An empty directory eaglectl takes for a mount point (another st_dev than its parent's)."""
    import eaglectl.export.atomic as atomic

    mnt = tmp_path / "w" / "mnt"
    mnt.mkdir(parents=True)
    real = atomic.stages_inside
    monkeypatch.setattr(atomic, "stages_inside", lambda dest: Path(dest) == mnt or real(dest))
    return mnt


def test_a_mount_point_export_stages_inside_and_replaces_its_own(cli, samples, mount_point):
    ck = samples["nemo-legacy-eagle3"]
    seen = []
    import eaglectl.export.atomic as atomic

    real_stage = atomic.stage_dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("eaglectl.export.exporter.stage_dir", lambda dest: seen.append(real_stage(dest)) or seen[-1])
        assert cli("export", ck, "-o", mount_point).exit_code == 0
    assert seen[0].parent == mount_point  # staged on the output's own file system
    assert sorted(p.name for p in mount_point.iterdir()) == ["config.json", MANIFEST, "model.safetensors"]
    assert sorted(p.name for p in mount_point.parent.iterdir()) == ["mnt"]
    result = cli("export", ck, "-o", mount_point, "--force", "--max-shard-size", "64KB")
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in mount_point.iterdir())
    assert "model.safetensors" not in names and "model.safetensors.index.json" in names
    assert sorted(json.loads((mount_point / MANIFEST).read_text())["files"]) == names
    (mount_point / "notes.txt").write_text("mine")
    assert_refused(cli("export", ck, "-o", mount_point, "--force"), "did not write")
    assert (mount_point / "notes.txt").read_text() == "mine"


def test_a_killed_move_into_a_mount_point_is_undone_by_the_next_run(cli, samples, mount_point):
    from eaglectl.export.atomic import JOURNAL

    ck = samples["nemo-legacy-eagle3"]
    stage = mount_point / f".mnt{STAGE_TAG}dead"
    stage.mkdir()
    (stage / MANIFEST).write_text("{}")
    (stage / JOURNAL).write_text(json.dumps(["model.safetensors", "config.json", MANIFEST]))
    (mount_point / "model.safetensors").write_bytes(b"half")  # moved before the kill
    result = cli("export", ck, "-o", mount_point)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in mount_point.iterdir()) == ["config.json", MANIFEST, "model.safetensors"]
    assert (mount_point / "model.safetensors").stat().st_size > 100


# ------------------------------------------------------------------------------ a read-only previous export
def _without_privilege(*args: str) -> list[str]:
    """An eaglectl command line that file permissions apply to: as it is for a user; for root, with the
    capabilities that override them dropped (skips where that cannot be done)."""
    cmd = [sys.executable, "-m", "eaglectl", *args]
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: permissions cannot apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps=-all", *cmd]


@pytest.mark.parametrize("fallback", [False, True])
def test_a_read_only_previous_export_is_replaced_without_leftovers(samples, tmp_path, fallback):
    ck = samples["nemo-legacy-eagle3"]
    work = tmp_path / "w"
    work.mkdir()
    out = work / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run(_without_privilege("export", str(ck), "-o", str(out)), env=env, check=True, capture_output=True)
    for p in [*out.iterdir(), out]:
        p.chmod(p.stat().st_mode & ~0o222)  # chmod -R a-w
    cmd = _without_privilege("export", str(ck), "-o", str(out), "--force", "--dtype", "float32")
    if fallback:  # the two-rename swap, where the kernel has no RENAME_EXCHANGE
        cmd[cmd.index("-m"):cmd.index("-m") + 2] = ["-c", "import eaglectl.export.atomic as a; a._exchange = lambda "
                                                          "x, y: False; from eaglectl.cli.app import main; main()"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["out"]  # the previous export is gone, not left in a temp dir
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"
