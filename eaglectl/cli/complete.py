"""Shell-completion callbacks. They run on every TAB press: file system only, no heavy imports.

Typer drops every candidate that does not start with what the user typed, so path candidates keep the
user's spelling of the directory part (`./`, `~/`, `/abs/`, `a/b/`) and only fill in the last component.
A directory that is not a match itself but has subdirectories is offered with a trailing `/`, so TAB can
walk down to a checkpoint; anything else is left out. When nothing matches, the shell falls back to its own
file completion.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum

from eaglectl.checkpoint import EPOCH_DIR, LEGACY_EPOCH_DIR, SPECFORGE_STEP_DIR
from eaglectl.enums import Algorithm, Engine, ExportDType, ExportFormat, ServeDType, ServeEngine

_FILE_MARKERS = ("config.json", "draft_model.pt", "training_state.pt")
_DIR_MARKERS = ("model",)
# Entries looked at per candidate directory: a TAB must stay instant beside a data dir of 10^5 files.
_SCAN_LIMIT = 2000


def _scan(d: str) -> tuple[set[str], set[str], bool]:
    """(file names, directory names, truncated) of `d`, at most `_SCAN_LIMIT` entries; empty if unreadable."""
    files: set[str] = set()
    dirs: set[str] = set()
    try:
        with os.scandir(d) as it:
            for n, entry in enumerate(it):
                if n >= _SCAN_LIMIT:  # the named markers can still be checked directly
                    files.update(m for m in _FILE_MARKERS if os.path.isfile(os.path.join(d, m)))
                    dirs.update(m for m in _DIR_MARKERS if os.path.isdir(os.path.join(d, m)))
                    return files, dirs, True
                try:
                    (dirs if entry.is_dir() else files).add(entry.name)
                except OSError:
                    continue
    except OSError:
        pass
    return files, dirs, False


def _is_checkpoint(files: set[str], dirs: set[str]) -> bool:
    """The layouts `eaglectl.checkpoint.resolve.resolve` knows, judged by names only (no file is opened)."""
    return bool(files.intersection(_FILE_MARKERS) or dirs.intersection(_DIR_MARKERS)
                or any(EPOCH_DIR.match(n) or LEGACY_EPOCH_DIR.match(n) or SPECFORGE_STEP_DIR.match(n) for n in dirs))


def _is_model_dir(files: set[str], dirs: set[str]) -> bool:
    return "config.json" in files


def _complete_dirs(incomplete: str, keep: Callable[[set[str], set[str]], bool]) -> list[str]:
    incomplete = incomplete or ""
    if incomplete == "~":  # nothing to list yet; let TAB turn it into the home directory
        return ["~/"] if os.path.isdir(os.path.expanduser("~")) else []
    head, sep, prefix = incomplete.rpartition("/")
    shown_head = head + sep  # "", "/", "./", "~/", "a/b/" exactly as typed
    directory = os.path.expanduser(shown_head) if sep else "."
    show_hidden = prefix.startswith(".")
    try:
        with os.scandir(directory) as it:
            names = sorted(
                e.name for e in it
                if e.name.startswith(prefix) and (show_hidden or not e.name.startswith(".")) and _is_dir(e)
            )
    except OSError:
        return []
    out = []
    for name in names:
        files, dirs, truncated = _scan(os.path.join(directory, name))
        if keep(files, dirs):
            out.append(shown_head + name)
        elif dirs or truncated:
            out.append(shown_head + name + "/")
    return out


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a link to a checkpoint is a checkpoint
    except OSError:
        return False


def checkpoint_paths(incomplete: str) -> list[str]:
    """Directories that look like drafter checkpoints (config.json, draft_model.pt, training_state.pt, model/,
    epoch_*_step_*/, epoch_*/, *-step*/)."""
    return _complete_dirs(incomplete, _is_checkpoint)


def target_paths(incomplete: str) -> list[str]:
    """Directories holding a config.json (target model directories)."""
    return _complete_dirs(incomplete, _is_model_dir)


def _enum_values(choices: type[Enum], incomplete: str) -> list[str]:
    # Matched case-insensitively (the options are), but Typer drops any candidate that does not start with
    # the typed text verbatim, so a case mismatch is answered in the user's case: `eag` -> `eagle3`.
    incomplete = incomplete or ""
    out = []
    for member in choices:
        value = str(member.value)
        if value.startswith(incomplete):
            out.append(value)
        elif value.lower().startswith(incomplete.lower()):
            if incomplete.islower():
                out.append(value.lower())
            elif incomplete.isupper():
                out.append(value.upper())
            else:
                out.append(incomplete + value[len(incomplete):])
    return out


def algorithms(incomplete: str) -> list[str]:
    """Values of `eaglectl.enums.Algorithm`."""
    return _enum_values(Algorithm, incomplete)


def export_dtypes(incomplete: str) -> list[str]:
    """Values of `eaglectl.enums.ExportDType`."""
    return _enum_values(ExportDType, incomplete)


def export_formats(incomplete: str) -> list[str]:
    """Values of `eaglectl.enums.ExportFormat`."""
    return _enum_values(ExportFormat, incomplete)


def serve_engines(incomplete: str) -> list[str]:
    """Values of `eaglectl.enums.ServeEngine`."""
    return _enum_values(ServeEngine, incomplete)


def serve_dtypes(incomplete: str) -> list[str]:
    """Values of `eaglectl.enums.ServeDType`."""
    return _enum_values(ServeDType, incomplete)


def engines(incomplete: str) -> list[str]:
    """Values of `eaglectl.enums.Engine`."""
    return _enum_values(Engine, incomplete)


# SGLang 0.5.15's attention backends for dense (MHA / GQA) models; other names still pass through to SGLang.
SGLANG_ATTENTION_BACKENDS = ("triton", "fa3", "fa4", "flashinfer", "trtllm_mha", "flex_attention", "torch_native",
                             "aiter", "wave")


def attention_backends(incomplete: str) -> list[str]:
    """SGLang attention backend names."""
    return [b for b in SGLANG_ATTENTION_BACKENDS if b.startswith(incomplete or "")]


# --- installing the shipped scripts (`eaglectl --install-completion`) ------------------------------------------------
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
# The shipped scripts: in a source tree under completions/, in an installed wheel under its data prefix (the
# [tool.hatch.build.targets.wheel.shared-data] table of pyproject.toml).
SHIPPED = {"bash": ("completions/eaglectl.bash", "share/bash-completion/completions/eaglectl"),
           "zsh": ("completions/_eaglectl", "share/zsh/site-functions/_eaglectl"),
           "fish": ("completions/eaglectl.fish", "share/fish/vendor_completions.d/eaglectl.fish"),
           "powershell": ("completions/eaglectl.ps1", "share/eaglectl/completions/eaglectl.ps1")}
ZSH_INIT = "fpath+=~/.zfunc; autoload -Uz compinit; compinit"


def detect_shell() -> str | None:
    """The shell eaglectl runs under (as Typer's installer detects it), else $SHELL's name."""
    try:
        import shellingham  # Typer's own dependency, for the same detection its installer makes

        return str(shellingham.detect_shell()[0])
    except Exception:  # not detectable (no parent shell, an unknown one) or not installed
        name = os.path.basename(os.environ.get("SHELL", ""))
        return name or None


def shipped_script(shell: str) -> tuple[str, list[str]]:
    """The text of the completion script eaglectl ships for `shell`, and where it was looked for."""
    import sysconfig
    from pathlib import Path

    source, data = SHIPPED["powershell" if shell == "pwsh" else shell]
    tree = Path(__file__).resolve().parents[2]  # a source checkout (an editable install runs from it)
    places = [tree / source] if (tree / "pyproject.toml").is_file() else []
    places.append(Path(sysconfig.get_path("data")) / data)
    for place in places:
        try:
            return place.read_text(encoding="utf-8"), [str(p) for p in places]
        except OSError:
            continue
    return "", [str(p) for p in places]


def install_completion(shell: str | None) -> tuple[str, str]:
    """Install the shipped completion script for `shell` (None: detected) where Typer's installer puts its stock
    one, and load it from the shell's start-up file (a line appended once, nothing else there changed). Returns
    (shell, installed path); raises OutputError when it cannot."""
    import subprocess
    from pathlib import Path

    from eaglectl.errors import OutputError
    from eaglectl.export.atomic import write_bytes_atomic

    shell = shell or detect_shell()
    if shell not in SHELLS:
        raise OutputError(f"cannot install completion for shell {shell!r} (eaglectl ships scripts for bash, zsh, "
                          f"fish and PowerShell)", hint="pass the shell: --install-completion bash")
    script, looked = shipped_script(shell)
    if not script:
        raise OutputError(f"the {shell} completion script shipped with eaglectl is not installed (looked in "
                          f"{', '.join(looked)})", hint="reinstall eaglectl, or see docs/completion.md")
    home = Path.home()
    if shell == "bash":
        path, rc = home / ".bash_completions" / "eaglectl.sh", home / ".bashrc"
        line = f"source '{path}'"
    elif shell == "zsh":
        path, rc, line = home / ".zfunc" / "_eaglectl", home / ".zshrc", ZSH_INIT
    elif shell == "fish":
        path, rc, line = home / ".config" / "fish" / "completions" / "eaglectl.fish", None, None
    else:
        try:
            found = subprocess.run([shell, "-NoProfile", "-Command", "echo", "$profile"], capture_output=True,
                                   timeout=60, check=True).stdout.decode(errors="replace").strip()
        except (OSError, subprocess.SubprocessError) as exc:
            raise OutputError(f"cannot ask {shell} for its profile ({exc})") from exc
        path, rc, line = Path(found), None, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if shell in ("powershell", "pwsh"):  # the profile is the user's: the script is added to it, once
            old = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            if script.strip() not in old:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(("\n" if old and not old.endswith("\n") else "") + script)
        else:
            write_bytes_atomic(path, script.encode("utf-8"))
        if rc is not None and line is not None:
            old = rc.read_text(encoding="utf-8", errors="replace") if rc.exists() else ""
            if line not in old:
                with open(rc, "a", encoding="utf-8") as fh:
                    fh.write(("\n" if old and not old.endswith("\n") else "") + line + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot install the completion script ({exc.strerror or exc})") from exc
    return shell, str(path)
