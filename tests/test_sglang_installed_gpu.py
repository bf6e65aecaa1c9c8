"""The installed-release check against real SGLang (marked gpu: run on the device machine with the SGLang bundle).

Needs only SGLang importable by this interpreter (no CUDA): the check runs before any launch.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from eaglectl.engines.sglang import rules
from tests.synthetic_heads import head, write

pytestmark = pytest.mark.gpu


@pytest.fixture
def real_sglang() -> str:
    if importlib.util.find_spec("sglang") is None:
        pytest.skip("SGLang not installed")
    from eaglectl.serving.installed import installed_sglang

    version = installed_sglang(sys.executable).version
    assert version is not None and rules.release_key(version) is not None
    assert "sglang" not in sys.modules  # read without importing it
    return version


def _serve(target, draft, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eaglectl", "serve", "--target", str(target), "--draft", str(draft),
                           *extra], capture_output=True, text=True, timeout=300)


def test_norm_before_fc_head_is_refused_by_an_older_real_sglang(real_sglang, sample_root, tmp_path):
    if rules.release_key(real_sglang) >= rules.release_key("0.5.17"):
        pytest.skip(f"SGLang {real_sglang} has norm_before_fc")
    draft = write(tmp_path / "nbf", *head(input_norm=True, norm_before_fc=True))
    done = _serve(sample_root / "target", draft)
    assert done.returncode == 1, done.stderr
    assert f"SGLang {real_sglang} installed for" in done.stderr and "norm_before_fc" in done.stderr
    assert 'pip install "sglang>=0.5.17"' in done.stderr
    print(done.stderr.strip())


def test_a_plain_head_passes_the_real_release_check(real_sglang, samples):
    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.export.plan import build_plan
    from eaglectl.serving.installed import require_release

    ckpt = resolve(samples["nemo-consolidated"])
    plan = build_plan(ckpt)
    check = require_release(sys.executable, plan.config, plan.shapes, plan.algorithm, list(ckpt.weights.tensors))
    assert check.version == real_sglang and check.problems == []
    assert check.rules == rules.range_label(real_sglang)
    print(f"SGLang {check.version}: rules {check.rules}, minimum {check.minimum}")
