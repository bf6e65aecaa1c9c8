"""What the installed SGLang can do (eaglectl/runner/sglang/api.py): API shapes found by capability, keywords
filtered by signature, SGLang's exceptions named in one line.

The fake SGLang (tests/fakes/sglang_internals.py) follows SGLang's contracts where the runner depends on
them; the modules under test are imported on first use, not while collecting.
"""

from __future__ import annotations

import pytest

from eaglectl.errors import EaglectlError
from tests.fakes.sglang_internals import (
    FakeForwardBatch,
    FakeModelRunner,
    FakeReq09,
    FakeReq15,
    FakeScheduleBatch09,
    FakeScheduleBatch15,
    FakeStagedModelRunner,
)
from tests.helpers import LazyModule

sglang_api = LazyModule("eaglectl.runner.sglang.api")


# ----------------------------------------------------------------------------------------------------------------
# API shape, by capability


def test_detects_the_0_5_9_shape():
    api = sglang_api.detect_api(model_runner=FakeModelRunner, req=FakeReq09, schedule_batch=FakeScheduleBatch09,
                                forward_batch=FakeForwardBatch, version="0.5.9")
    assert (api.staged_init, api.extend_range, api.worker_batch, api.shape) == (False, False, True, "0.5.9/0.5.12")


def test_detects_the_0_5_15_shape():
    api = sglang_api.detect_api(model_runner=FakeStagedModelRunner, req=FakeReq15, schedule_batch=FakeScheduleBatch15,
                                forward_batch=FakeForwardBatch)
    assert (api.staged_init, api.extend_range, api.worker_batch, api.shape) == (True, True, False, "0.5.15+")
    assert api.forward_batch_extra == ()


def test_detects_a_forward_batch_keyword_it_knows():
    class FB:
        @classmethod
        def init_new(cls, batch, model_runner, return_hidden_states_before_norm):
            return None

    api = sglang_api.detect_api(model_runner=FakeStagedModelRunner, req=FakeReq15, schedule_batch=FakeScheduleBatch15,
                                forward_batch=FB)
    assert api.forward_batch_extra == (("return_hidden_states_before_norm", False),)


def test_unknown_api_shapes_fail_naming_what_is_missing():
    class HalfStaged(FakeModelRunner):
        def alloc_memory_pool(self):
            pass

    class NoExtend:
        def __init__(self, *a, **k):
            pass

    class FB:
        @classmethod
        def init_new(cls, batch, model_runner, mystery_flag):
            return None

    with pytest.raises(sglang_api.SGLangApiError) as info:
        sglang_api.detect_api(model_runner=HalfStaged, req=NoExtend, schedule_batch=object, forward_batch=FB,
                              version="9.9.9")
    msg = str(info.value)
    assert "sglang 9.9.9" in msg
    assert "ModelRunner has alloc_memory_pool but not init_attention_backends, init_cuda_graphs" in msg
    assert "Req has neither set_extend_range" in msg
    assert "ScheduleBatch has no init_new" in msg and "ScheduleBatch has no prepare_for_extend" in msg
    assert "ForwardBatch.init_new needs an argument this runner does not know: mystery_flag" in msg
    assert "0.5.9/0.5.12 and 0.5.15+" in info.value.hint
    assert isinstance(info.value, EaglectlError)


# ----------------------------------------------------------------------------------------------------------------
# Calling SGLang across releases


def test_accepted_keywords_follow_the_signature_and_are_cached():
    def narrow(rid, origin_input_ids):
        return rid

    def wide(rid, **kwargs):
        return rid

    accepted = sglang_api.accepted_kwargs
    given = {"rid": "a", "origin_input_ids": [1], "new_in_a_later_release": 1}
    assert accepted(narrow, given) == {"rid": "a", "origin_input_ids": [1]}
    assert accepted(wide, given) == given
    assert accepted(narrow, {"rid": "b"}) == {"rid": "b"}  # second call: the cached signature


def test_sglang_failures_are_named_by_type_and_first_line():
    assert sglang_api.sglang_failure(ValueError("bad\nmore")) == "ValueError: bad"
    assert sglang_api.sglang_failure(MemoryError()) == "MemoryError"
    long = sglang_api.sglang_failure(RuntimeError("x" * 1000), limit=50)
    assert long == "RuntimeError: " + "x" * 47 + "..."
