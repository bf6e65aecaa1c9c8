"""Crash safety, concurrency and resource limits of the commands that write, and serve's child lifetime.

SIGKILL lands at random moments in `export` and `token-map` runs (a few trials here, >= 50 in the `slow`
test): afterwards the output is absent (only when there was none before), the previous version, or the
complete new one, byte for byte — never partial; the next run succeeds and removes what the killed one left.
Kills are aimed two ways: at a random time over the whole run, and just after the staging directory appears
(so they land while the tensors are being written). Both swap paths are exercised: renameat2 exchange and the
two-rename fallback (forced by disabling the exchange in the child).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

from eaglectl.export.atomic import OLD_TAG, STAGE_TAG, cleanup_leftovers, exclusive_lock
from tests.helpers import fake_python, free_port, survivor

ROOT = Path(__file__).resolve().parent.parent
FORCE_FALLBACK = "import eaglectl.export.atomic as a; a._exchange = lambda x, y: False; "
RUN_CLI = "import sys; from eaglectl.cli.entry import main; sys.argv[0] = 'eaglectl'; main()"


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def big(tmp_path_factory) -> Path:
    """A NeMo-legacy EAGLE-3 head of ~19 MB (hidden 512, vocab 8192): large enough for kills to land mid-write."""
    import torch

    import eaglectl.demo.samples as s

    d = tmp_path_factory.mktemp("big") / "ckpt"
    d.mkdir()
    with mock.patch.multiple(s, H=512, HEADS=8, KV=4, HEAD_DIM=64, INTER=1536, VOCAB=8192, DRAFT_VOCAB=2048):
        tensors = s.eagle3_tensors("layers.0.", "", seed=2, embeddings=True)
        torch.save({"draft_model." + k: v for k, v in tensors.items()}, d / "draft_model.pt")
        s.save_json(d / "config.json", s.draft_config(architectures=["LlamaEagle3DraftModel"], num_layers=32))
        s.save_meta(d / "eagle3_meta.pt")
    return d


@pytest.fixture(scope="session")
def references(big, tmp_path_factory) -> dict[str, object]:
    """What a complete export looks like: `prev` (dtype kept) and `new` (--dtype fp32), plus the token map."""
    from eaglectl.export.exporter import export_checkpoint
    from eaglectl.export.token_map import write_token_map

    root = tmp_path_factory.mktemp("refs")
    export_checkpoint(str(big), output=root / "prev")
    export_checkpoint(str(big), output=root / "new", dtype="fp32")
    write_token_map(str(big), output=root / "tm.pt")
    return {"prev_dir": root / "prev", "prev": tree(root / "prev"), "new": tree(root / "new"),
            "tm": (root / "tm.pt").read_bytes()}


def tree(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if STAGE_TAG in p.name or OLD_TAG in p.name)


def cli_cmd(*args, fallback: bool = False) -> list[str]:
    return [sys.executable, "-c", (FORCE_FALLBACK if fallback else "") + RUN_CLI, *map(str, args)]


def kill_at_random(cmd: list[str], rng: random.Random, *, parent: Path, stage_prefix: str, run_s: float) -> int:
    """Start `cmd`, SIGKILL it at a random moment; return its exit status (negative: killed)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if rng.random() < 0.5:  # anywhere in the run
        time.sleep(rng.uniform(0, run_s * 1.1))
    else:  # while writing: shortly after the staging file / directory appears
        deadline = time.monotonic() + run_s * 3
        while proc.poll() is None and time.monotonic() < deadline:
            if any(n.startswith(stage_prefix) for n in os.listdir(parent)):
                break
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, 0.1))
    proc.kill()
    return proc.wait()


@pytest.fixture(scope="session")
def run_seconds(big, tmp_path_factory) -> float:
    """How long one uninterrupted export takes here (start-up included): the span kills are spread over."""
    out = tmp_path_factory.mktemp("timing") / "out"
    t0 = time.monotonic()
    subprocess.run(cli_cmd("export", big, "--output", out, "--dtype", "fp32"), cwd=ROOT, check=True,
                   capture_output=True)
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------------ kill trials
def export_trial(big: Path, refs: dict, parent: Path, i: int, rng: random.Random, run_s: float) -> str:
    """One kill; returns what it left: absent / previous / complete, "+staging" when it was mid-write."""
    out = parent / f"out{i}"
    had_previous = rng.random() < 0.6
    if had_previous:
        shutil.copytree(refs["prev_dir"], out)
    fallback = rng.random() < 0.3
    cmd = cli_cmd("export", big, "--output", out, "--dtype", "fp32", "--force", fallback=fallback)
    status = kill_at_random(cmd, rng, parent=parent, stage_prefix=f".out{i}{STAGE_TAG}", run_s=run_s)
    where = f"trial {i} (previous={had_previous}, fallback={fallback}, status={status})"
    if not out.exists() and had_previous:
        # Only the fallback swap has a moment without `out`: killed between its two renames. The backup it
        # made is what the next run restores.
        assert fallback and any(OLD_TAG in n for n in leftovers(parent)), where
        cleanup_leftovers(out)
        assert tree(out) == refs["prev"], where
    state = "absent" if not out.exists() else (
        "previous" if tree(out) == refs["prev"] else "complete" if tree(out) == refs["new"] else "PARTIAL")
    assert state != "PARTIAL", f"{where}: {sorted(os.listdir(out))}"
    assert state != "absent" or not had_previous, where
    if leftovers(parent):
        state += "+staging"
    again = subprocess.run(cli_cmd("export", big, "--output", out, "--dtype", "fp32"), cwd=ROOT,
                           capture_output=True, text=True)
    assert again.returncode == 0, f"{where}: {again.stderr}"
    assert tree(out) == refs["new"], where
    assert leftovers(parent) == [], where
    return state


def previous_token_map() -> bytes:
    """A token map eaglectl wrote for another checkpoint: the kind of file token-map may replace."""
    import torch

    from eaglectl.export.token_map import token_map_bytes

    return token_map_bytes(torch.arange(7, 40))


def token_map_trial(big: Path, refs: dict, parent: Path, i: int, rng: random.Random, run_s: float) -> str:
    out = parent / f"tm{i}.pt"
    previous = previous_token_map()
    had_previous = rng.random() < 0.5
    if had_previous:
        out.write_bytes(previous)
    status = kill_at_random(cli_cmd("token-map", big, "--output", out), rng, parent=parent,
                            stage_prefix=f".tm{i}.pt{STAGE_TAG}", run_s=run_s)
    where = f"trial {i} (previous={had_previous}, status={status})"
    if not out.exists():
        assert not had_previous, where
        state = "absent"
    else:
        data = out.read_bytes()
        state = "previous" if data == previous and had_previous else "complete" if data == refs["tm"] else "PARTIAL"
        assert state != "PARTIAL", where
    if leftovers(parent):
        state += "+staging"
    again = subprocess.run(cli_cmd("token-map", big, "--output", out), cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, f"{where}: {again.stderr}"
    assert out.read_bytes() == refs["tm"] and leftovers(parent) == [], where
    return state


def test_sigkill_export_a_few_times(big, references, run_seconds, tmp_path):
    rng = random.Random(1234)
    states = [export_trial(big, references, tmp_path, i, rng, run_seconds) for i in range(2)]
    assert all(s.split("+")[0] in ("absent", "previous", "complete") for s in states)


def test_sigkill_token_map_a_few_times(big, references, run_seconds, tmp_path):
    rng = random.Random(99)
    states = [token_map_trial(big, references, tmp_path, i, rng, run_seconds) for i in range(2)]
    assert all(s.split("+")[0] in ("absent", "previous", "complete") for s in states)


@pytest.mark.slow
def test_sigkill_export_and_token_map_many_times(big, references, run_seconds, tmp_path):
    """60 export and 30 token-map kills; the seed is printed so a failure can be replayed."""
    seed = int(os.environ.get("EAGLECTL_CRASH_SEED", random.randrange(2**32)))
    print(f"EAGLECTL_CRASH_SEED={seed}")
    rng = random.Random(seed)
    states = [export_trial(big, references, tmp_path, i, rng, run_seconds) for i in range(60)]
    states += [token_map_trial(big, references, tmp_path, 100 + i, rng, run_seconds) for i in range(30)]
    assert len(states) >= 50
    print({s: states.count(s) for s in sorted(set(states))})  # "+staging": killed mid-write


def test_leftovers_of_a_killed_token_map_are_removed(cli, big, references, tmp_path):
    out = tmp_path / "tm.pt"
    (tmp_path / f".tm.pt{STAGE_TAG}abc123").write_bytes(b"half a token m")
    result = cli("token-map", big, "--output", out)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == references["tm"] and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------ concurrency
def test_two_exports_of_the_same_checkpoint_at_once(big, references, tmp_path):
    out = tmp_path / "same"
    procs = [subprocess.Popen(cli_cmd("export", big, "--output", out, "--dtype", "fp32"), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.communicate()[1]) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or (code == 1 and "another eaglectl process is writing it" in err and
                             err.strip().startswith("error:") and "Traceback" not in err), results
    assert tree(out) == references["new"] and leftovers(tmp_path) == []


def test_a_busy_output_does_not_block_other_outputs(cli, big, references, tmp_path):
    """Locks are per output: while one export holds its output, another output is written meanwhile."""
    busy, free = tmp_path / "busy", tmp_path / "free"
    with exclusive_lock(busy):
        blocked = cli("export", big, "--output", busy)
        assert blocked.exit_code == 1 and "another eaglectl process is writing it" in blocked.stderr
        assert not busy.exists()
        assert cli("export", big, "--output", free).exit_code == 0
        assert tree(free) == references["prev"]
    assert cli("export", big, "--output", busy).exit_code == 0 and tree(busy) == references["prev"]


def test_token_map_lock_gives_a_clear_message(cli, big, tmp_path):
    out = tmp_path / "tm.pt"
    out.write_bytes(previous_token_map())
    with exclusive_lock(out):
        result = cli("token-map", big, "--output", out)
    assert result.exit_code == 1 and "another eaglectl process is writing it" in result.stderr
    assert out.read_bytes() == previous_token_map()


# ---------------------------------------------------------------------------------------- resource limits
def _file_size_limit(limit: int):
    def apply() -> None:  # SIGXFSZ left alone: CPython ignores it at start-up, so writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_export_under_a_file_size_limit_fails_cleanly(big, references, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(references["prev_dir"], out)
    proc = subprocess.run(cli_cmd("export", big, "--output", out, "--dtype", "fp32", "--force"), cwd=ROOT,
                          preexec_fn=_file_size_limit(1_000_000), capture_output=True, text=True)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().startswith("error:") and "write failed (File too large)" in proc.stderr
    assert "previous output left intact" in proc.stderr and "Traceback" not in proc.stderr
    assert tree(out) == references["prev"] and leftovers(tmp_path) == []


def test_token_map_under_a_file_size_limit_fails_cleanly(big, references, tmp_path):
    out = tmp_path / "tm.pt"
    out.write_bytes(previous_token_map())
    proc = subprocess.run(cli_cmd("token-map", big, "--output", out), cwd=ROOT,
                          preexec_fn=_file_size_limit(4096), capture_output=True, text=True)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "write failed (File too large); previous file left intact" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_bytes() == previous_token_map() and leftovers(tmp_path) == []


def test_token_map_under_a_file_size_limit_without_a_previous_one_says_nothing_was_written(big, tmp_path):
    """It said "previous file left intact" where there was none."""
    out = tmp_path / "tm.pt"
    proc = subprocess.run(cli_cmd("token-map", big, "--output", out), cwd=ROOT,
                          preexec_fn=_file_size_limit(4096), capture_output=True, text=True)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "write failed (File too large); nothing written" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------- serve child
# Stands in for SGLang, with what makes orphans likely: a grandchild (SGLang's scheduler / detokenizer
# processes) in the same process group. MODE=hang never answers /health; MODE=exit0 exits 0 once healthy.
FAKE_SERVER = r"""
import json, os, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
args = sys.argv[1:]
if args[:1] == ["-c"]:
    sys.exit(0)
# On SIGINT Python prints a KeyboardInterrupt traceback, which eaglectl relays as the server's log and the signal
# tests would read as eaglectl's own: the server exits quietly, and its child's stderr goes nowhere.
import signal
signal.signal(signal.SIGINT, lambda *_: os._exit(130))
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stderr=subprocess.DEVNULL)
with open(os.environ["FAKE_PIDS"] + ".tmp", "w") as fh:
    json.dump([os.getpid(), grandchild.pid], fh)
os.replace(os.environ["FAKE_PIDS"] + ".tmp", os.environ["FAKE_PIDS"])
mode = os.environ.get("FAKE_MODE", "serve")
if mode == "hang":
    time.sleep(600)
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
        if mode == "exit0":
            threading.Timer(0.3, lambda: os._exit(0)).start()
    def do_POST(self):
        body = json.dumps({"output_ids": [1, 2], "meta_info": {"completion_tokens": 2, "spec_accept_length": 2.0,
                                                               "spec_verify_ct": 1}}).encode()
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer((host, port), H).serve_forever()
"""


@pytest.fixture
def fake_sglang(tmp_path, monkeypatch) -> tuple[str, Path]:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    exe = fake_python(tmp_path, script)
    pids = tmp_path / "pids.json"
    monkeypatch.setenv("FAKE_PIDS", str(pids))
    return str(exe), pids


def _all_gone(pids_file: Path, timeout: float = 15.0) -> None:
    pid = survivor(json.loads(pids_file.read_text()), timeout)
    assert pid is None, f"process {pid} outlived eaglectl"


def _serve_args(samples, exe: str, *extra) -> list[str]:
    return ["serve", "--target", samples["target"], "--draft", samples["specforge"], "--python", exe,
            "--port", str(free_port()), *extra]


def test_serve_normal_exit_stops_child_and_grandchild(cli, samples, fake_sglang):
    exe, pids = fake_sglang
    result = cli(*_serve_args(samples, exe, "--smoke-only"))
    assert result.exit_code == 0, result.stderr
    _all_gone(pids)


def test_serve_server_exiting_on_its_own_leaves_no_grandchild(cli, samples, fake_sglang, monkeypatch):
    exe, pids = fake_sglang
    monkeypatch.setenv("FAKE_MODE", "exit0")
    result = cli(*_serve_args(samples, exe, "--wait"))
    assert result.exit_code == 0, result.stderr
    _all_gone(pids)


def test_serve_error_exit_stops_child_and_grandchild(cli, samples, fake_sglang, monkeypatch):
    exe, pids = fake_sglang
    monkeypatch.setenv("FAKE_MODE", "hang")
    result = cli(*_serve_args(samples, exe, "--wait", "--timeout", "1"))
    assert result.exit_code == 1 and "did not answer" in result.stderr and "Traceback" not in result.stderr
    _all_gone(pids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_signal_stops_child_and_grandchild(samples, fake_sglang, sig):
    exe, pids = fake_sglang
    args = _serve_args(samples, exe, "--wait")
    proc = subprocess.Popen([sys.executable, "-m", "eaglectl", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not pids.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # let eaglectl reach its health loop
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"Traceback" not in err
    _all_gone(pids)


# -------------------------------------------------------------------------- SIGINT, SIGTERM and SIGHUP
@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                    (signal.SIGHUP, 129, "terminated (SIGHUP)")])
def test_a_signal_mid_export_cleans_up_like_ctrl_c(big, references, tmp_path, sig, code, said):
    out = tmp_path / "out"
    shutil.copytree(references["prev_dir"], out)
    reset = "import signal; signal.signal(signal.SIGHUP, signal.SIG_DFL); "  # as a terminal session starts it
    cmd = [sys.executable, "-c", reset + RUN_CLI, "export", str(big), "--output", str(out), "--dtype", "fp32",
           "--force"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not leftovers(tmp_path):
        time.sleep(0.001)
    assert proc.poll() is None, "the export ended before it could be signalled"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, (proc.returncode, stderr)
    assert stderr.strip().splitlines()[-1] == f"error: {said}" and "Traceback" not in stderr
    assert leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")] == []
    assert tree(out) == references["prev"]


@pytest.mark.parametrize(("sig", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, "Terminated")])
def test_a_signal_during_an_import_waits_for_the_import(tmp_path, monkeypatch, sig, raised):
    """Ctrl-C or SIGTERM in the first second of a run lands inside `import torch`: raised there, it broke the
    interpreter (pybind11 aborted with SIGABRT; numpy and ssl refused to import again, a traceback). The signal is
    held back until the import is done, then raised as it would have been."""
    import importlib

    from eaglectl.cli import app

    mod = tmp_path / "eaglectl_slow_import_probe.py"
    mod.write_text("import os, signal, time\n"
                   f"os.kill(os.getpid(), {int(sig)})\n"
                   "deadline = time.monotonic() + 0.3\n"
                   "while time.monotonic() < deadline:\n"
                   "    pass\n"
                   "DONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = app.Terminated if raised == "Terminated" else raised
    restore = app._terminate_like_interrupt()
    try:
        with pytest.raises(expected):
            importlib.import_module("eaglectl_slow_import_probe")
            time.sleep(2)  # the signal, sent again once the import is done, lands here
    finally:
        restore()
        module = sys.modules.pop("eaglectl_slow_import_probe", None)
    assert module is not None and module.DONE is True  # the import ran to its end


# A run whose first tenth of a second is a Ctrl-C: the signal lands while the CLI is imported (typer, rich,
# eaglectl's modules) or its command line read, before any command runs.
EARLY = ("import os, signal, sys; sys.argv[0] = 'eaglectl'; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "signal.signal(signal.SIGHUP, signal.SIG_DFL); from eaglectl.cli import entry, signals; signals.hold(); {send}"
         "entry.main()")
WHILE_IMPORTING = "os.kill(os.getpid(), {sig}); "  # held from the entry point's first line, before any import
WHILE_PARSING = ("import typer.main as tm; real = tm.get_command; "  # while Typer builds the command line's parser
                 "tm.get_command = lambda app: (os.kill(os.getpid(), {sig}), real(app))[1]; ")


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                   (signal.SIGHUP, 129, "terminated (SIGHUP)")])
@pytest.mark.parametrize("when", [WHILE_IMPORTING, WHILE_PARSING])
@pytest.mark.parametrize("command", ["export", "inspect --json", "--help"])
def test_a_signal_before_the_command_starts_ends_the_run_in_one_line(samples, tmp_path, sig, code, said, when,
                                                                      command):
    """Not a traceback from inside an import: the signal is held back until the command's handlers take it, and
    the run ends as one ends a command (one line, its exit code, nothing written; with --json its envelope). One
    that no command takes (`--help`) ends the run the same way once the help is printed."""
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    out = outputs / "out"
    args = {"export": ["export", str(samples["specforge"]), "-o", str(out)],
            "inspect --json": ["inspect", "--json", str(samples["specforge"])], "--help": ["--help"]}[command]
    run = EARLY.format(send=when.format(sig=int(sig)))
    proc = subprocess.run([sys.executable, "-c", run, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.splitlines() == [f"error: {said}"], proc.stderr
    assert list(outputs.iterdir()) == []  # no output, no staging, no lock
    if command == "inspect --json":
        doc = json.loads(proc.stdout)
        assert doc["ok"] is False and doc["error"]["exit_code"] == code and doc["command"] == "inspect"
    if command == "--help":
        assert "Usage: eaglectl" in proc.stdout


def test_a_signal_held_over_the_runs_last_import_is_not_dropped(tmp_path, monkeypatch):
    """A signal held back during an import the command ends right after (before it is sent again) goes back to
    the entry point, which ends the run with it: dropped, a Ctrl-C'd run exited 0."""
    import importlib

    from eaglectl import interrupts
    from eaglectl.cli import app, signals

    mod = tmp_path / "eaglectl_last_import_probe.py"
    mod.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    signals.hold()
    try:
        if not signals.holding(signal.getsignal(signal.SIGTERM)):
            pytest.skip("SIGTERM has a handler of its own in this test run")
        restore = app._terminate_like_interrupt()
        try:
            importlib.import_module("eaglectl_last_import_probe")  # held: an import is under way
        finally:
            restore()  # the run ends within the 50 ms before the signal is sent again
        assert interrupts.kept() == [signal.SIGTERM]  # for the entry point (`_end_held`), which ends the run
    finally:
        signals.release()
        signals.take()
        sys.modules.pop("eaglectl_last_import_probe", None)
