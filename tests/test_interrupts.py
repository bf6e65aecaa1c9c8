"""How Ctrl-C, SIGTERM and SIGHUP end a run (`eaglectl.interrupts`), each signal sent at an exact moment of a
real run (tests/fakes/signal_at.py): the first signal ends the run, one line, its exit code, nothing left behind;
a second one does not cut the first one's cleanup or report short; a lock's release, the handlers' installation
and restoration are never cut; a signal once the output is committed does not fail the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eaglectl import interrupts

ROOT = Path(__file__).resolve().parent.parent
RUN = ("import signal, sys; signal.signal(signal.SIGHUP, signal.SIG_DFL); sys.argv[0] = 'eaglectl'; "
       "import tests.fakes.signal_at; from eaglectl.cli.entry import main; main()")


def run(at: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EAGLECTL_TEST_SIGNAL_AT=at)
    return subprocess.run([sys.executable, "-c", RUN, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def export_args(samples, out: Path, *extra: str) -> list[str]:
    return ["export", str(samples["specforge"]), "-o", str(out), *extra]


def left(outputs: Path) -> list[str]:
    """What eaglectl's own files beside the output a run left: staging, backups, locks."""
    return sorted(p.name for p in outputs.iterdir() if "eaglectl" in p.name)


@pytest.fixture
def outputs(tmp_path) -> Path:
    d = tmp_path / "outputs"
    d.mkdir()
    return d


def test_a_signal_while_the_lock_is_released_leaves_no_lock_file(samples, outputs):
    """Ctrl-C landing in the lock's release, between the check that the lock file is still this run's and its
    removal, left `.out.eaglectl.lock` beside the output. The release is held whole."""
    out = outputs / "out"
    proc = run("eaglectl.export.atomic:_same_file:2:SIGINT", *export_args(samples, out))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert left(outputs) == []
    assert (out / "eaglectl_export.json").is_file()


def test_a_signal_after_the_commit_does_not_fail_the_run(samples, outputs):
    """The export is in place: the run reports its success (`"ok": true`) and exits 0, saying on stderr that the
    signal came after the command had finished; not `error: terminated` with the new output in place."""
    out = outputs / "out"
    proc = run("eaglectl.export.exporter:commit_dir:1:SIGTERM:after", *export_args(samples, out, "--json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    assert "error:" not in proc.stderr and "Traceback" not in proc.stderr
    assert "SIGTERM arrived after the command had finished" in proc.stderr
    assert (out / "eaglectl_export.json").is_file() and left(outputs) == []


def test_a_signal_before_the_commit_replaces_nothing(samples, outputs):
    """Landing before the commit (the last check before it), the run fails and the previous export stays; one
    landing inside the commit is held over it, and so comes after it."""
    out = outputs / "out"
    assert run("", *export_args(samples, out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = run("eaglectl.export.exporter:refuse_foreign_dir:1:SIGTERM:after",
               *export_args(samples, out, "--force", "--json"))
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.splitlines() == ["error: terminated (SIGTERM)"]
    assert json.loads(proc.stdout)["ok"] is False
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and left(outputs) == []


@pytest.mark.parametrize(("second", "where"), [
    ("SIGHUP", "eaglectl.export.atomic:cleanup_leftovers:2"),  # the cleanup the first signal started
    ("SIGINT", "eaglectl.output:error:1"),  # the first signal's error line
    ("SIGHUP", "eaglectl.cli.app:_nothing:1"),  # never called: only the first signal (the control)
])
def test_a_second_signal_does_not_cut_the_first_ones_cleanup_or_report(samples, outputs, second, where):
    """SIGTERM then SIGHUP escaped as a traceback (`eaglectl.cli.app.Terminated: 1`, exit 1), or SIGTERM then
    Ctrl-C exited 130 without a line: the first signal ends the run, whatever follows while it does."""
    out = outputs / "out"
    proc = run(f"eaglectl.export.exporter:refuse_foreign_dir:1:SIGTERM;{where}:{second}", *export_args(samples, out))
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.splitlines() == ["error: terminated (SIGTERM)"]
    assert not out.exists() and left(outputs) == []


def test_a_signal_while_the_handlers_are_restored_after_a_failure(samples, tmp_path):
    """After the command's error line: the run ends with the command's failure, one line, no traceback."""
    proc = run("eaglectl.output:error:1:SIGHUP:after", "inspect", str(tmp_path / "missing"))
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.splitlines()) <= 2 and proc.stderr.startswith("error: ")  # its line (and hint)
    assert "Traceback" not in proc.stderr and "terminated" not in proc.stderr


def test_a_signal_while_the_handlers_are_installed(samples, outputs):
    """Between installing the handler of one signal and the next (before the command's `try`): it escaped as a
    traceback. Raised once the handlers are in place, inside the command: one line, its code."""
    proc = run("eaglectl.cli.app:_terminate_like_interrupt:1:SIGTERM:after", *export_args(samples, outputs / "o"))
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.splitlines() == ["error: terminated (SIGTERM)"]
    assert left(outputs) == [] and not (outputs / "o").exists()


def test_a_signal_after_the_ok_document(samples):
    """Once the result is printed (`"ok": true`), a signal is no failure: no traceback, no second document."""
    proc = run("eaglectl.output:write_json:1:SIGINT:after", "inspect", "--json", str(samples["specforge"]))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr
    assert "SIGINT arrived after the command had finished" in proc.stderr


# ------------------------------------------------------------------------------------------- the rules, unit
def test_the_first_signal_is_raised_and_later_ones_are_kept():
    with pytest.raises(interrupts.Terminated):
        interrupts.on_signal(signal.SIGTERM)
    interrupts.on_signal(signal.SIGHUP)  # kept, not raised
    assert interrupts.first() == signal.SIGTERM and interrupts.kept() == [signal.SIGHUP]


def test_a_held_section_raises_what_arrived_when_it_ends():
    with pytest.raises(KeyboardInterrupt), interrupts.held():
        interrupts.on_signal(signal.SIGINT)
        reached = True
    assert reached and interrupts.first() == signal.SIGINT


def test_past_the_point_of_no_return_a_signal_is_kept():
    interrupts.commit_ends_run()
    with interrupts.held():
        interrupts.committed()
        interrupts.on_signal(signal.SIGINT)
    assert interrupts.done() and interrupts.first() is None and interrupts.kept() == [signal.SIGINT]
