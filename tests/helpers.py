"""Helpers shared by test modules (fixtures live in conftest.py; fakes of external systems in tests/fakes/)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def run_json(cli, *args: str) -> tuple[int, dict]:
    result = cli(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


class LazyModule:
    """A module imported on first attribute use: collecting a test file must not import the module it tests
    (other tests check that the CLI never does)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # pytest's collection probes must not import it
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


def read_all(d: Path) -> dict[str, Any]:
    """Every tensor of every `*.safetensors` file in `d`, by name (torch tensors, cloned off the mapping)."""
    from safetensors import safe_open

    out = {}
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            out.update({k: fh.get_tensor(k).clone() for k in fh.keys()})  # noqa: SIM118
    return out


def sibling_venv(path: Path, dists: dict[str, str] | None = None) -> str:
    """A real venv at `path` made from this interpreter's base, as `python -m venv` makes one (its python a symlink
    to the same binary as this venv's), holding each package of `dists` (name -> version) as its metadata and a
    module that refuses to be imported (eaglectl reads the version without importing it). Returns its python."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next((path / "lib").glob("python3*/site-packages"))
    for name, version in (dists or {}).items():
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"raise RuntimeError('the probe must not import {name}')\n")
        dist = site / f"{name}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return str(path / "bin" / "python")


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_python(tmp_path: Path, script: Path) -> Path:
    """An executable `tmp_path/fakepy` that runs `script` under this interpreter, for eaglectl's `--python`."""
    exe = tmp_path / "fakepy"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    exe.chmod(0o755)
    return exe


def survivor(pids: list[int], timeout: float) -> int | None:
    """The first of `pids` still running after `timeout` seconds (one deadline for all); None once all are gone."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                return pid
            time.sleep(0.05)
    return None


# The GPU proofs (tests/test_*_gpu.py): the distilled fixture of shared/fixtures/distill_eagle3.py, named by
# EAGLECTL_DISTILL_FIXTURE (the directory holding target/, nemo/, prompts.json), served by real SGLang.
DISTILL_FIXTURE = os.environ.get("EAGLECTL_DISTILL_FIXTURE")
SGLANG_FLAGS = ["--attention-backend", "triton", "--sampling-backend", "pytorch", "--skip-tokenizer-init",
                "--disable-cuda-graph", "--max-running-requests", "16"]


def gpu_requirements() -> str | None:
    import importlib.util

    if not DISTILL_FIXTURE or not Path(DISTILL_FIXTURE, "nemo").is_dir():
        return "EAGLECTL_DISTILL_FIXTURE not set to a distill_eagle3.py output"
    if importlib.util.find_spec("sglang") is None:
        return "SGLang not installed"
    import torch

    return None if torch.cuda.is_available() else "no CUDA"


def sglang_port() -> int:
    """A free port below 50000: SGLang 0.5.15 derives further ports from it (its gRPC port must stay < 65536)."""
    import random

    for port in random.sample(range(20000, 50000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def raw_sglang_argv(target: Path, draft: Path, port: int) -> list[str]:
    """SGLang launched directly on a head (no eaglectl in between), with the fixture's speculative settings."""
    return [sys.executable, "-m", "sglang.launch_server", "--model-path", str(target), "--speculative-algorithm",
            "EAGLE3", "--speculative-draft-model-path", str(draft), "--speculative-num-steps", "3",
            "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "4", "--dtype", "bfloat16",
            "--host", "127.0.0.1", "--port", str(port), "--mem-fraction-static", "0.5", *SGLANG_FLAGS]


def raw_accept_length(target: Path, draft: Path, prompts: Path) -> float | None:
    """SGLang launched directly on a head (no eaglectl in between): the mean accept length it gives the head as it
    is, from the smoke prompts."""
    from eaglectl.serving import launcher
    from eaglectl.serving.serve import smoke_test

    port = sglang_port()
    server = launcher.ServerProcess(raw_sglang_argv(target, draft, port), dict(os.environ))
    server.start()
    try:
        server.wait_healthy(f"http://127.0.0.1:{port}", timeout=480)
        smoke = smoke_test(f"http://127.0.0.1:{port}", json.loads(prompts.read_text()), 64)
        return smoke.mean_accept_length
    finally:
        server.stop()


def serve_smoke(target: Path, draft: Path, prompts: Path, *extra: str) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "eaglectl", "serve", "--json", "--target", str(target), "--draft", str(draft),
           "--port", str(sglang_port()), "--smoke-only", "--smoke-prompts", str(prompts),
           "--smoke-max-new-tokens", "64", "--timeout", "480", "--mem-fraction-static", "0.5", *extra, "--",
           *SGLANG_FLAGS]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=560)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout), wall


def distilled_nemo_head(tmp_path: Path) -> tuple[Path, Path]:
    """Skips unless CUDA, SGLang and the distilled fixture are there; else the fixture and a copy of its NeMo
    head under `tmp_path` (export writes beside the head)."""
    reason = gpu_requirements()
    if reason:
        pytest.skip(reason)
    fixture = Path(DISTILL_FIXTURE)
    work = tmp_path / "fixture"
    shutil.copytree(fixture / "nemo", work / "nemo")
    return fixture, work / "nemo" / "epoch_0_step_100"


def ready_head_with_nan_and_stale_t2d(src: Path, dest: Path) -> Path:
    """A copy of the SGLang-ready head `src` (a SpecForge sample: served as it stands, no export) with a NaN in
    fc.weight and a t2d that disagrees with d2t (one token out, another in): what inspect and export warn of."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest)
    tensors = load_file(dest / "model.safetensors")
    tensors["fc.weight"][0, 0] = float("nan")
    t2d = tensors["t2d"].clone()
    first_in, first_out = int(t2d.nonzero()[0]), int((~t2d).nonzero()[0])
    t2d[first_in], t2d[first_out] = False, True
    tensors["t2d"] = t2d
    save_file(tensors, dest / "model.safetensors", metadata={"format": "pt"})
    return dest
