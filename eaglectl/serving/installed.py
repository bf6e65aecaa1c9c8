"""The SGLang release an interpreter has installed, and whether that release loads a drafter correctly.

`serve` (and `bench`) launch SGLang with `--python`; the verdict that matters is the one for the release that
interpreter will import. The version is read from the package metadata (or `sglang/version.py`), never by
importing `sglang`: its import pulls in torch, CUDA and the whole server (seconds), and a broken install
must still be reported as what it is.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from eaglectl.engines.sglang import rules
from eaglectl.enums import Algorithm
from eaglectl.errors import MissingDependencyError, UnsupportedDraftError, install_hint

INSTALL_HINT = install_hint("sglang")
PROBE_TIMEOUT_S = 120
PROBE_MAX_OUTPUT = 64 * 1024


def probe(package: str = "sglang") -> dict[str, Any]:
    """Find `package` (sglang, vllm) and its version without importing it. Self-contained: its source also runs
    in the interpreter given with --python, which need not have eaglectl."""
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return {"installed": False, "version": None}
    version = None
    try:
        import importlib.metadata as md

        version = md.version(package)
    except Exception:  # no distribution metadata (a source checkout on the path)
        pass
    for loc in [] if version else list(spec.submodule_search_locations or []):
        for name in ("version.py", "_version.py"):
            try:
                with open(loc + "/" + name) as fh:
                    found = re.search(r"__version__\s*(?::\s*str\s*)?=\s*(?:version\s*=\s*)?['\"]([^'\"]+)",
                                      fh.read(65536))
            except OSError:
                continue
            if found:
                version = found.group(1)
                break
        if version:
            break
    return {"installed": True, "version": version}


def venv_prefix(python: str) -> str | None:
    """The venv `python` runs in: the directory holding `pyvenv.cfg` beside or above `python` as named (not
    where a symlink leads: every venv made from one base interpreter links its python to that same binary)."""
    exe = os.path.abspath(python)
    for d in (os.path.dirname(exe), os.path.dirname(os.path.dirname(exe))):
        if os.path.isfile(os.path.join(d, "pyvenv.cfg")):
            return d
    return None


def _named(python: str) -> str | None:
    """`python` as a path: a bare name is looked up on PATH, as the launch will."""
    import shutil

    return python if os.sep in python else shutil.which(python)


def is_this_interpreter(python: str) -> bool:
    """Whether `python` runs in this interpreter's environment: it is `sys.executable` itself, or a python of the
    same venv (`sys.prefix`). Another venv made from the same base interpreter is another environment, though its
    python resolves to the same binary."""
    found = _named(python)
    if not found or not sys.executable:
        return False
    exe = os.path.abspath(found)
    if exe == os.path.abspath(sys.executable):
        return True
    theirs = venv_prefix(exe)
    if sys.prefix != sys.base_prefix:  # we run in a venv: only a python of this venv is this one
        try:
            return theirs is not None and os.path.samefile(theirs, sys.prefix)
        except OSError:
            return False
    return theirs is None and os.path.realpath(exe) == os.path.realpath(sys.executable)


def release_on_disk(python: str) -> str | None:
    """The SGLang release `python` would import, read from its metadata without running it: for this
    interpreter `probe()`, for another the `sglang-*.dist-info` in its venv's site-packages. None when that
    cannot be known this way (not a venv, a venv that also sees the system's packages, no metadata)."""
    if is_this_interpreter(python):
        version = probe().get("version")
        return version if isinstance(version, str) and version else None
    found = _named(python)
    prefix = venv_prefix(found) if found else None
    if prefix is None:
        return None
    import glob
    import importlib.metadata as md

    sites = sorted(glob.glob(os.path.join(glob.escape(prefix), "lib*", "python3*", "site-packages"))
                   + glob.glob(os.path.join(glob.escape(prefix), "Lib", "site-packages")))
    try:
        versions = {d.version for d in md.distributions(name="sglang", path=sites)}
        if not versions and _sees_system_site_packages(prefix):
            return None  # it may import an SGLang from the base interpreter's site-packages
    except (OSError, ValueError):
        return None
    return versions.pop() if len(versions) == 1 else None


def _sees_system_site_packages(prefix: str) -> bool:
    try:
        with open(os.path.join(prefix, "pyvenv.cfg"), encoding="utf-8", errors="replace") as fh:
            text = fh.read(65536)
    except OSError:
        return True
    return any(line.split("=", 1)[0].strip() == "include-system-site-packages"
               and line.split("=", 1)[-1].strip().lower() == "true" for line in text.splitlines())


@dataclass
class InstalledSGLang:
    python: str
    version: str | None  # None: installed, but its version could not be read


def installed_sglang(python: str) -> InstalledSGLang:
    """Ask `python` for its SGLang release; exit 2 with the install hint when it has none."""
    found = probe() if is_this_interpreter(python) else _run_probe(python)
    if not found.get("installed"):
        raise MissingDependencyError(f"SGLang is not importable by {python}; eaglectl launches "
                                     f"`{python} -m sglang.launch_server`", hint=INSTALL_HINT)
    version = found.get("version")
    return InstalledSGLang(python, version if isinstance(version, str) and version else None)


def _run_probe(python: str, package: str = "sglang") -> dict[str, Any]:
    import inspect
    import subprocess

    code = f"from typing import Any\n{inspect.getsource(probe)}\nimport json\nprint(json.dumps(probe({package!r})))"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True,
                              timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return {"installed": False}
    if done.returncode != 0:
        return {"installed": False}
    lines = done.stdout[-PROBE_MAX_OUTPUT:].decode(errors="replace").strip().splitlines()
    try:
        found = json.loads(lines[-1]) if lines else None
    except ValueError:
        found = None
    return found if isinstance(found, dict) else {"installed": True, "version": None}


@dataclass
class ReleaseCheck:
    """One installed release against one drafter."""

    version: str | None
    rules: str | None  # the rule range used, e.g. "0.5.12–0.5.16"
    minimum: str | None  # the oldest known release serving the drafter's features
    problems: list[str] = field(default_factory=list)  # what this release would get wrong: refuse
    warnings: list[str] = field(default_factory=list)


def check_release(version: str | None, cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]],
                  algorithm: Algorithm, stored_names: list[str] | None = None, *,
                  cuda_graph: bool = True) -> ReleaseCheck:
    """Replay `version`'s loader over the drafter as it will be handed to SGLang (`cfg`, `shapes`); the
    drafter's needs are read from those and from `stored_names` (the checkpoint before any export).
    `cuda_graph`: the server will capture CUDA graphs (not started with --disable-cuda-graph)."""
    from eaglectl.engines.sglang.loader import ignored_config, minimum_release, simulate_load

    minimum, needs = minimum_release(cfg, [*(stored_names or []), *shapes], algorithm, cuda_graph=cuda_graph)
    check = ReleaseCheck(version, None, minimum or None)
    if version is None:
        check.warnings.append(f"could not read the installed SGLang version; checked against the newest known "
                              f"release, {rules.NEWEST_KNOWN}")
        version = rules.NEWEST_KNOWN
    if rules.release_key(version) is None:
        check.warnings.append(f"SGLang version {version!r} is not a release number eaglectl can order; checked "
                              f"against the newest known release, {rules.NEWEST_KNOWN}")
        version = rules.NEWEST_KNOWN
    if rules.is_older_than_supported(version):
        check.problems.append(f"SGLang {version} is older than {rules.OLDEST_SUPPORTED}, the oldest release "
                              f"eaglectl knows the loader rules of")
        return check
    if rules.is_newer_than_known(version):
        check.warnings.append(f"SGLang {version} is newer than {rules.NEWEST_KNOWN}, the newest release eaglectl "
                              f"knows; checked with {rules.NEWEST_KNOWN}'s loader rules")
    check.rules = rules.range_label(version)
    sim = simulate_load(cfg, shapes, algorithm, version)
    sim.ignored_config = ignored_config(cfg, algorithm, version, [*(stored_names or []), *shapes])
    check.problems += ([p.replace(f"SGLang {version} ", "") for p in sim.problems]  # the most telling first
                       + [f"ignores config key {k}" for k in sim.ignored_config] + sim.shape_errors
                       + [f"skips {n}" for n in sim.skipped]
                       + [f"leaves {n} uninitialised" for n in sim.uninitialized]
                       + [f"loads {n} twice (the last one wins)" for n in sim.overwritten])
    if minimum and rules.older(version, minimum) and not check.problems:
        check.problems.append(f"lacks {', '.join(needs)}")
    return check


def require_release(python: str, cfg: dict[str, Any] | None, shapes: dict[str, tuple[int, ...]] | None,
                    algorithm: Algorithm | None, stored_names: list[str] | None = None, *,
                    installed: InstalledSGLang | None = None, cuda_graph: bool = True) -> ReleaseCheck:
    """What `serve` and `bench` run before launching: the installed release of `python`, checked against the
    drafter (none given: only the version is read). Raises (exit 1, hint naming the minimum release) when that
    release would skip or ignore a weight or config key the drafter relies on; warnings are left to the caller.
    `installed`: the answer of an earlier `installed_sglang(python)`, so the interpreter is asked once."""
    installed = installed or installed_sglang(python)
    if cfg is None or shapes is None or algorithm is None:
        check = ReleaseCheck(installed.version, None, None)
        v = installed.version
        if v and rules.release_key(v) and rules.is_newer_than_known(v):
            check.warnings.append(f"SGLang {v} is newer than {rules.NEWEST_KNOWN}, the newest release eaglectl "
                                  f"knows")
        return check
    check = check_release(installed.version, cfg, shapes, algorithm, stored_names, cuda_graph=cuda_graph)
    if check.problems:
        shown = "; ".join(check.problems[:3]) + (f" and {len(check.problems) - 3} more"
                                                 if len(check.problems) > 3 else "")
        wanted = check.minimum or rules.OLDEST_SUPPORTED
        older = rules.release_key(installed.version or rules.NEWEST_KNOWN) or (0,)
        hint = (f'install SGLang >= {wanted} for {python}: pip install "sglang>={wanted}"'
                if older < (rules.release_key(wanted) or (0,)) else "run `eaglectl inspect` on the drafter for the fix")
        raise UnsupportedDraftError(
            f"SGLang {installed.version or '(unknown version)'} installed for {python} would load this drafter "
            f"wrong: {shown}" + (f"; it needs SGLang >= {check.minimum}" if check.minimum and hint.startswith(
                "install") else ""), hint=hint)
    return check
