"""Every hostile checkpoint of `tests/hostile/` through every command that reads checkpoints.

For each case and command: the documented exit code, exactly one specific `error:` line on stderr (inspect may
instead report an error finding, exit 1), no traceback, and nothing written: the whole case directory —
including the export and token map a previous successful run left there — is byte-for-byte and
mtime-for-mtime the same afterwards. Pickles whose unpickling would run code never run it.

Unreadable files: root reads everything, so `chmod 000` proves nothing when the suite runs as root. Those cases
run the commands in a child process whose capability bounding set lacks CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH: still uid 0, but file modes apply to it as to any user (skipped where the kernel or the
container refuses to drop them).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eaglectl.cli.app import app
from eaglectl.output import printable
from tests.hostile import CASES, COMMANDS, MARKER, Case, Evil, build_bases

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bases(tmp_path_factory):
    return build_bases(tmp_path_factory.mktemp("hostile-bases"))


@pytest.fixture(scope="session")
def target(sample_root) -> Path:
    return sample_root / "target"


def argv_for(command: str, path: Path, target: Path, *, target_checks: bool = False) -> list[list[str]]:
    """The invocations of one command: inspect also in --json mode (and with --target when the case is about
    the target), serve as --print-only (it must not launch)."""
    p = str(path)
    with_target = ["--target", str(target)] if target_checks else []
    return {
        "inspect": [["inspect", p, *with_target], ["inspect", p, "--json", *with_target]],
        "export": [["export", p]],
        "token-map": [["token-map", p]],
        "serve": [["serve", "--target", str(target), "--draft", p, "--print-only"]],
    }[command]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (symlinks not followed): type, mode, mtime, and content hash / link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                try:
                    digest = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < 2**24 else "big"
                except OSError:  # unreadable to a non-root test run
                    digest = "unreadable"
                out[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, digest)
            else:
                out[rel] = ("other", st.st_mode, st.st_mtime_ns)
    return out


def check_failure(case: Case, command: str, args: list[str], code: int, stdout: str, stderr: str) -> None:
    where = f"{case.name}: eaglectl {' '.join(args)}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-3000:]}"
    assert "Traceback" not in stderr and "Traceback" not in stdout, where
    assert code == case.code, where
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if command == "inspect" and case.inspect_finding:
        assert len(errors) == 1 and "error finding(s):" in errors[0], where  # the report, then one error line
        if "--json" in args:
            doc = json.loads(stdout)
            assert doc["ok"] is False, where
            assert any(f["severity"] == "error" and case.expect in f["message"]
                       for f in doc["result"]["findings"]), where
        else:
            assert case.expect in stdout, where
        return
    assert len(errors) == 1, where
    assert case.expect in errors[0], where
    assert all(line.startswith(("error:", "hint:", "warning:")) for line in lines), where
    if "--json" in args:  # stdout: the failure envelope, the same error, and nothing else
        doc = json.loads(stdout)
        assert doc["ok"] is False and doc["result"] is None, where
        assert errors[0] == f"error: {printable(doc['error']['message'])}", where
        assert doc["error"]["exit_code"] == code, where
    else:
        assert stdout == "", where


AS_STORED = "error: 1 error finding(s): loads-nothing"  # a NeMo base (draft_model.*) as stored: export fixes it


def check_success(case: Case, command: str, args: list[str], code: int, stdout: str, stderr: str) -> None:
    where = f"{case.name}: eaglectl {' '.join(args)}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-3000:]}"
    if command == "inspect" and code == 1 and AS_STORED in stderr:
        code, stderr = 0, stderr.replace(AS_STORED, "")
    assert code == 0 and "Traceback" not in stderr, where
    assert "error:" not in stderr, where
    if case.warning and command == "inspect" and "--json" in args:
        doc = json.loads(stdout)
        found = [f for f in doc["result"]["findings"] if f["code"] == case.warning]
        assert found and found[0]["severity"] == "warning", where
    if case.warning and command == "export":
        assert "warning:" in stderr and ("NaN" in stderr or "Inf" in stderr), where


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        return result.exit_code, result.stdout, result.stderr + "\n" + tb
    return result.exit_code, result.stdout, result.stderr


# Runs the given invocations through CliRunner in a process that cannot override file modes, and checks
# first that the file the case made unreadable really is unreadable there.
DRIVER = r"""
import json, os, sys, traceback
from typer.testing import CliRunner
from eaglectl.cli.app import app
probe, invocations = json.loads(sys.argv[1])
if os.access(probe, os.R_OK) and os.path.isfile(probe) or os.access(probe, os.W_OK) and os.path.isdir(probe):
    print(json.dumps({"skip": f"{probe} is still accessible: file modes are not enforced here"}))
    sys.exit(0)
out = []
for argv in invocations:
    r = CliRunner().invoke(app, argv)
    err = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        err += "\n" + "".join(traceback.format_exception(r.exception))
    out.append([r.exit_code, r.stdout, err])
print(json.dumps({"results": out}))
"""


def _drop_dac_override() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: gone from the bounding set, hence after exec
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(77)


def run_unprivileged(probe: Path, invocations: list[list[str]]) -> list[tuple[int, str, str]]:
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([str(probe), invocations])],
                          preexec_fn=_drop_dac_override if os.geteuid() == 0 else None, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 77:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here (no CAP_SETPCAP): unreadable files cannot be simulated")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.splitlines()[-1])
    if "skip" in doc:
        pytest.skip(doc["skip"])
    return [tuple(r) for r in doc["results"]]


def test_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, bases, target, tmp_path):
    work = tmp_path / "case"
    work.mkdir()
    path = case.build(work, bases)
    if case.target:
        target = work / case.target
    invocations = [(command, args) for command in case.commands
                   for args in argv_for(command, path, target, target_checks=bool(case.target))]
    try:
        if case.unreadable:
            before = snapshot(work)
            results = run_unprivileged(work / case.unreadable, [args for _, args in invocations])
            for (command, args), (code, out, err) in zip(invocations, results, strict=True):
                check_failure(case, command, args, code, out, err)
            assert snapshot(work) == before, "something was written"
            return
        for command, args in invocations:
            before = snapshot(work)
            code, out, err = run_in_process(args)
            if command in case.succeeds:
                check_success(case, command, args, code, out, err)
            else:
                check_failure(case, command, args, code, out, err)
                assert snapshot(work) == before, f"{case.name}: eaglectl {' '.join(args)} wrote something"
        assert not list(work.rglob(MARKER)), "pickled code ran"
    finally:
        for p in [work, *work.rglob("*")]:  # let pytest clean up what the case made unreadable
            if not p.is_symlink():
                os.chmod(p, 0o755 if p.is_dir() else 0o644)


def test_the_hostile_pickles_really_run_code_when_loaded_unsafely(tmp_path):
    """Guards the corpus itself: the payload is live, so 'marker never created' above means something."""
    import torch

    marker = tmp_path / MARKER
    payload = pickle.dumps({"fc.weight": Evil(marker)})
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    torch.save({"w": torch.ones(2), "hook": Evil(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_previous_export_survives_a_corrupted_source(cli, bases, tmp_path):
    """A source that exported fine once, then broke: every re-run fails and the old sglang/ is untouched."""
    from tests.hostile import copy_base

    ck = copy_base(bases, "pt", tmp_path)
    before = snapshot(ck / "sglang")
    assert (ck / "sglang" / "model.safetensors").is_file() and (ck / "speculative_token_map.pt").is_file()
    (ck / "draft_model.pt").write_bytes((ck / "draft_model.pt").read_bytes()[:1000])
    for args in (["export", ck], ["export", ck, "--force"], ["token-map", ck]):
        result = cli(*args)
        assert result.exit_code == 1 and "not a readable torch checkpoint" in result.stderr
    assert snapshot(ck / "sglang") == before


@pytest.mark.parametrize("key", ["st", "pt", "sharded", "specforge"])
def test_bases_are_healthy(cli, bases, key):
    """The corpus breaks healthy checkpoints: make sure they are."""
    result = cli("inspect", bases[key])
    if key == "pt":  # NeMo's draft_model.* names: SGLang loads none of them as stored (export renames them)
        assert result.exit_code == 1 and result.stderr.startswith(AS_STORED), result.stdout + result.stderr
    else:
        assert result.exit_code == 0, result.stdout + result.stderr


def test_non_finite_finding_names_the_tensors(cli, bases, tmp_path):
    from tests.hostile import CASES as ALL

    build = next(c for c in ALL if c.name == "nan-and-inf-weights").build
    ck = build(tmp_path, bases)
    result = cli("inspect", ck, "--json")
    assert result.exit_code == 0
    finding = next(f for f in json.loads(result.stdout)["result"]["findings"] if f["code"] == "non-finite")
    assert "model.fc.weight (1 NaN)" in finding["message"] and "lm_head.weight (2 Inf)" in finding["message"]
    result = cli("export", ck, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["result"]["action"] == "written" and any("NaN" in w for w in doc["result"]["warnings"])


def test_commands_cover_every_checkpoint_reader():
    assert set(COMMANDS) == {"inspect", "export", "token-map", "serve"}


@pytest.mark.parametrize("command", ["export", "token-map"])
def test_output_that_is_a_symlink_loop_is_refused(cli, bases, tmp_path, command):
    from tests.hostile import copy_base

    ck = copy_base(bases, "st", tmp_path)
    loop = tmp_path / "out"
    loop.symlink_to(loop)
    before = snapshot(tmp_path)
    result = cli(command, ck, "--output", loop)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error:") and "output path is a symlink loop or a broken symlink" in result.stderr
    assert snapshot(tmp_path) == before


def test_output_symlink_to_a_directory_is_written_through(cli, bases, tmp_path):
    """`model -> /big/disk/model`: the export lands in the link's target; the link stays a link."""
    from tests.hostile import copy_base

    ck = copy_base(bases, "st", tmp_path)
    real = tmp_path / "big disk" / "model"
    real.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    result = cli("export", ck, "--output", link)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and (real / "config.json").is_file() and (real / "model.safetensors").is_file()


@pytest.mark.parametrize("command", ["export", "token-map"])
@pytest.mark.parametrize("where", ["dir", "deeper"])
def test_output_under_a_broken_symlink_is_refused(cli, bases, tmp_path, command, where):
    """`-o LINK/out` with LINK dangling: nothing is created where LINK points."""
    from tests.hostile import copy_base

    ck = copy_base(bases, "st", tmp_path)
    gone = tmp_path / "gone" / "deeper"
    link = tmp_path / "link"
    link.symlink_to(gone if where == "dir" else tmp_path / "gone")
    out = link / "out" if where == "dir" else link / "deeper" / "out"
    before = snapshot(tmp_path)
    result = cli(command, ck, "--output", out)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error:") and f"{link} is a broken symlink" in result.stderr
    assert snapshot(tmp_path) == before and not (tmp_path / "gone").exists()


@pytest.mark.parametrize("command", ["export", "token-map"])
@pytest.mark.parametrize(("out", "said"), [
    ("n" * 256, "output path too long (File name too long)"),
    ("n" * 240, "output name too long: 240 bytes, and eaglectl's temporary name beside it adds 25"),
    ("d/" * 2100 + "out", "output path too long: "),
])
def test_output_names_too_long_are_said_to_be(cli, bases, tmp_path, command, out, said):
    from tests.hostile import copy_base

    ck = copy_base(bases, "st", tmp_path)
    before = snapshot(tmp_path)
    result = cli(command, ck, "--output", tmp_path / out)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error:") and said in result.stderr and "symlink" not in result.stderr
    assert snapshot(tmp_path) == before


# --- names and strings that are not UTF-8: read, exported and served as they are ------------------------------
NOT_UTF8 = os.fsdecode(b"run-\xe9t\xe9")  # a Latin-1 directory name: lone surrogates once decoded


@pytest.mark.parametrize("key", ["st", "pt", "sharded"])
def test_a_checkpoint_in_a_directory_named_in_other_bytes_than_utf8(cli, bases, target, tmp_path, key):
    from tests.hostile import copy_base

    ck = copy_base(bases, key, tmp_path / NOT_UTF8)
    for args in (["inspect", ck], ["inspect", ck, "--json"], ["export", ck, "--force"], ["token-map", ck],
                 ["serve", "--target", target, "--draft", ck, "--print-only"]):
        result = cli(*args)
        as_stored = args[0] == "inspect" and key == "pt" and AS_STORED in result.stderr  # draft_model.* names
        assert result.exit_code == (1 if as_stored else 0) and "Traceback" not in result.stderr, (args, result.stderr)
        assert "corrupt" not in result.stderr and "not a readable" not in result.stderr
    assert (ck / "sglang" / "model.safetensors").is_file()


def test_an_output_named_in_other_bytes_than_utf8_verifies(cli, bases, tmp_path):
    from tests.hostile import copy_base

    ck = copy_base(bases, "pt", tmp_path)
    out = tmp_path / NOT_UTF8
    result = cli("export", ck, "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["result"]
    assert doc["action"] == "written" and all(v["ok"] for v in doc["verification"])
    assert os.fsencode(tmp_path / NOT_UTF8) in [os.fsencode(tmp_path / n) for n in os.listdir(tmp_path)]
    assert cli("export", ck, "-o", out).exit_code == 0  # and is recognised as up to date


def test_a_config_string_with_a_lone_surrogate_is_kept_as_read(cli, bases, target, tmp_path):
    """`"_name_or_path": "/ckpt/\\udc80run"` is valid JSON; it has no UTF-8 form, so it is written as the same
    escape, not a UnicodeEncodeError."""
    from tests.hostile import copy_base

    ck = copy_base(bases, "st", tmp_path)
    text = (ck / "config.json").read_text()
    (ck / "config.json").write_text(text.replace("{", '{"_name_or_path": "/ckpt/\\udc80run", ', 1))
    for args in (["export", ck, "--force"], ["serve", "--target", target, "--draft", ck, "--print-only"],
                 ["serve", "--target", target, "--draft", ck, "--print-only", "--json"]):
        result = cli(*args)
        assert result.exit_code == 0 and "Traceback" not in result.stderr, (args, result.stderr)
    written = json.loads((ck / "sglang" / "config.json").read_bytes())
    assert written["_name_or_path"] == "/ckpt/\udc80run"
