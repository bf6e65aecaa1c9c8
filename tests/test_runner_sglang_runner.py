"""SGLangTargetRunner over the fake SGLang, end to end: one extend for a whole batch in both API shapes, the
splits the pools force, the checks before anything runs; and the package's import isolation.

The fake SGLang (tests/fakes/sglang_internals.py) follows SGLang's contracts where the runner depends on
them; the modules under test are imported on first use, not while collecting.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eaglectl.errors import EaglectlError
from eaglectl.runner.contract import Eagle3TargetBackend
from tests.fakes.sglang_internals import (
    FakeModelRunner,
    FakeStagedModelRunner,
    H,
    L,
    V,
    assert_matches,
    make_runner,
    padded_batch,
    reference,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "eaglectl/runner/sglang").glob("*.py"))


# ----------------------------------------------------------------------------------------------------------------
# Import isolation


def test_importing_the_runner_pulls_in_neither_sglang_nor_torch():
    modules = ", ".join(p[:-3].replace("/", ".").removesuffix(".__init__") for p in PACKAGE)
    code = (f"import sys, {modules}; from eaglectl.runner.sglang import SGLangTargetRunner; "
            "print(sorted(m for m in ('sglang', 'torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_the_package_is_split_into_modules_a_reader_can_hold():
    sizes = {p: len((ROOT / p).read_text().splitlines()) for p in PACKAGE}
    assert {"eaglectl/runner/sglang/runner.py", "eaglectl/runner/sglang/tp.py"} <= set(sizes)
    assert max(sizes.values()) < 400, sizes


@pytest.mark.parametrize("path", PACKAGE)
def test_no_module_level_heavy_import(path):
    tree = ast.parse((ROOT / path).read_text())
    names = []
    for node in tree.body:  # module level only; imports inside functions are the point
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    assert not [n for n in names if n.split(".")[0] in ("sglang", "torch", "transformers", "numpy")]


# ----------------------------------------------------------------------------------------------------------------
# The runner over fake SGLang classes (both API shapes)


@pytest.mark.parametrize("staged", [True, False], ids=["0.5.15", "0.5.9"])
def test_one_extend_for_the_whole_batch_matches_per_row_forwards(staged):
    runner, engine = make_runner(staged=staged)
    if staged:
        assert engine.mr.stages == ["alloc_memory_pool", "init_attention_backends", "init_cuda_graphs"]
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([9, 4, 1, 7], seq_len=10)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert runner.last_extend_count == 1 and len(engine.mr.log) == 1
    assert engine.mr.log[0]["reqs"] == 4 and engine.mr.log[0]["tokens"] == 21  # rows cut to their mask
    assert engine.mr.log[0]["ids"] == [t for r in rows for t in r]
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 10)
    assert logits.dtype == torch.float32 and aux.dtype == torch.float32


def test_aux_follows_the_requested_order_not_layer_order():
    runner, engine = make_runner()
    runner.set_aux_layers([5, 0, 2])
    assert engine.model.layers_to_capture == [1, 3, 6]  # SGLang stores ids + 1, sorted here
    ids, mask, rows = padded_batch([6, 3])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert_matches(logits, aux, rows, reference(engine.model, rows, [5, 0, 2]), 6)


def test_defaults_and_validation_of_aux_layers():
    runner, engine = make_runner()
    ids, mask, _ = padded_batch([3])
    runner.forward_eagle3(ids, mask)  # no set_aux_layers: SGLang's defaults for this depth
    assert runner.aux_layer_ids == [1, 2, 3] and engine.aux_layers == [1, 2, 3]
    with pytest.raises(EaglectlError, match="last layer"):
        runner.set_aux_layers([0, 1, L - 1])


def test_batch_larger_than_the_request_table_is_split():
    runner, engine = make_runner(max_running_requests=2)
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([5, 2, 5, 5, 1], seed=3)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert runner.last_extend_count == 3 and [e["reqs"] for e in engine.mr.log] == [2, 2, 1]
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 5)


def test_batch_larger_than_the_kv_pool_is_split():
    runner, engine = make_runner(max_total_tokens=12)
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([8, 4, 6, 6, 12], seed=4)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert [e["tokens"] for e in engine.mr.log] == [12, 12, 12]
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 12)


def test_caps_below_the_pools_split_too():
    runner, engine = make_runner(spec_kw={"max_requests_per_extend": 1})
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([3, 3, 2])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert runner.last_extend_count == 3
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 3)


@pytest.mark.parametrize("staged", [True, False], ids=["0.5.15", "0.5.9"])
def test_sglang_failing_to_start_is_one_clear_error(staged, monkeypatch):
    cls = FakeStagedModelRunner if staged else FakeModelRunner

    def missing_kernels(self, *a, **k):
        raise ImportError("cannot import name 'flash_ops' from 'sgl_kernel'")

    monkeypatch.setattr(cls, "init_attention_backends" if staged else "__init__", missing_kernels)
    destroyed = []
    with pytest.raises(EaglectlError, match="SGLang could not start the target: ImportError: cannot import name "
                                            "'flash_ops'") as info:
        make_runner(staged=staged, destroyed=destroyed)
    assert "attention backend" in info.value.hint and "EAGLECTL_DEBUG=1" in info.value.hint
    assert isinstance(info.value.__cause__, ImportError) and destroyed == [1]  # process groups torn down


def test_rows_are_checked_before_anything_runs():
    runner, engine = make_runner()
    ids, mask, _ = padded_batch([3, 3])
    with pytest.raises(ValueError, match="right-padded"):
        runner.forward_eagle3(ids, torch.tensor([[0, 1, 1], [1, 1, 1]]))
    bad = ids.clone()
    bad[1, 2] = V
    with pytest.raises(ValueError, match=f"row 1: token id {V} is outside the target's vocab"):
        runner.forward_eagle3(bad, mask)
    with pytest.raises(ValueError, match=r"must both be \[batch, seq_len\]"):
        runner.forward_eagle3(ids[0], mask[0])
    assert engine.mr.log == []


def test_empty_rows_and_padding_only_batches():
    runner, engine = make_runner()
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([0, 3, 0], seq_len=4)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert engine.mr.log[0]["reqs"] == 1
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 4)
    logits, aux = runner.forward_eagle3(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64))
    assert runner.last_extend_count == 0 and not logits.any() and not aux.any()


def test_logit_scale_softcap_and_tied_padded_embeddings_end_to_end():
    runner, engine = make_runner(model_kwargs={"tied": True, "logit_scale": 0.5, "softcap": 4.0})
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([5, 3])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5], scale=0.5, softcap=4.0), 5)
    emb = runner.input_embedding_weight()
    assert emb.shape == (V, H)  # the padded rows are dropped
    torch.testing.assert_close(emb, engine.model.embed_tokens.weight[:V])


def test_logits_dtype_option():
    runner, _ = make_runner(spec_kw={"logits_dtype": "bfloat16"})
    ids, mask, _ = padded_batch([3])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert logits.dtype == torch.bfloat16 and aux.dtype == torch.float32


def test_shift_contract_through_the_engine_agnostic_backend():
    runner, _ = make_runner()
    backend = Eagle3TargetBackend(runner, [1, 3, 5])
    ids, mask, _ = padded_batch([5, 3])
    logits, aux = runner.forward_eagle3(ids, mask)
    batch = backend.build(ids, mask)
    torch.testing.assert_close(batch.target_logits[:, :-1], logits[:, 1:])
    assert not batch.target_logits[:, -1].any()
    torch.testing.assert_close(batch.aux_hidden_states, aux)
    assert batch.input_ids[:, :-1].tolist() == ids[:, 1:].tolist()
    backend.close()
    backend.close()
