"""The EAGLE-3 target contract with a fake runner: shift semantics, aux ids, embedding passthrough, close."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from eaglectl.errors import CheckFailedError, ConfigError
from eaglectl.runner.contract import (
    Eagle3TargetBackend,
    TargetRunner,
    aux_layer_problems,
    build_eagle3_batch,
    default_aux_layer_ids,
    resolve_aux_layer_ids,
)

N_LAYERS, HIDDEN, VOCAB = 8, 4, 11


class FakeRunner:
    """Outputs encode where they came from: logits[b, s] = 1000*b + s (+ v/100), aux chunk c = 1000*b + s + c/10."""

    def __init__(self, num_layers: int = N_LAYERS, aux_chunks: int = 3) -> None:
        self.model = SimpleNamespace(
            config=SimpleNamespace(num_hidden_layers=num_layers, hidden_size=HIDDEN, vocab_size=VOCAB),
            parameters=lambda: iter([torch.zeros(1)]))
        self.embedding = torch.randn(VOCAB, HIDDEN)
        self.aux_ids: list[int] | None = None
        self.aux_chunks = aux_chunks
        self.closed = 0
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def set_aux_layers(self, ids):
        self.aux_ids = list(ids)

    def forward_eagle3(self, input_ids, attention_mask):
        self.calls.append((input_ids, attention_mask))
        b, s = input_ids.shape
        base = (1000 * torch.arange(b).view(b, 1) + torch.arange(s).view(1, s)).float()
        logits = base[..., None] + torch.arange(VOCAB).float() / 100
        aux = torch.cat([(base[..., None] + c / 10).expand(b, s, HIDDEN) for c in range(self.aux_chunks)], dim=-1)
        return logits, aux

    def input_embedding_weight(self):
        return self.embedding

    def close(self):
        self.closed += 1


def _rows():
    input_ids = torch.tensor([[5, 6, 7, 8, 9], [1, 2, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return input_ids, mask


def test_fake_runner_satisfies_the_protocol():
    assert isinstance(FakeRunner(), TargetRunner)
    assert not isinstance(object(), TargetRunner)


def test_logits_and_input_ids_shift_left_with_a_zero_tail():
    runner = FakeRunner()
    input_ids, mask = _rows()
    batch = build_eagle3_batch(runner, input_ids, mask)
    logits, _ = runner.forward_eagle3(input_ids, mask)
    assert batch.target_logits.shape == (2, 5, VOCAB)
    assert torch.equal(batch.target_logits[:, :-1], logits[:, 1:])
    assert torch.equal(batch.target_logits[:, -1], torch.zeros(2, VOCAB))
    assert batch.input_ids.tolist() == [[6, 7, 8, 9, 0], [2, 3, 0, 0, 0]]
    # Position 0 of row 1 is supervised by the target's prediction at position 1.
    assert batch.target_logits[1, 0, 0].item() == pytest.approx(1001.0)


def test_loss_mask_defaults_to_attention_mask_and_is_shifted():
    input_ids, mask = _rows()
    batch = build_eagle3_batch(FakeRunner(), input_ids, mask)
    # The last real token of each row has nothing left to predict: shifted mask drops it.
    assert batch.loss_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]


def test_explicit_loss_mask_is_shifted_not_replaced():
    input_ids, mask = _rows()
    loss_mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    batch = build_eagle3_batch(FakeRunner(), input_ids, mask, loss_mask=loss_mask)
    assert batch.loss_mask.tolist() == [[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]]


def test_aux_hidden_states_and_attention_mask_are_not_shifted():
    runner = FakeRunner()
    input_ids, mask = _rows()
    batch = build_eagle3_batch(runner, input_ids, mask)
    _, aux = runner.forward_eagle3(input_ids, mask)
    assert batch.aux_hidden_states.shape == (2, 5, 3 * HIDDEN)
    assert torch.equal(batch.aux_hidden_states, aux)
    assert batch.aux_hidden_states[1, 2, 0].item() == pytest.approx(1002.0)
    assert torch.equal(batch.attention_mask, mask)


def test_runner_gets_the_unshifted_inputs():
    runner = FakeRunner()
    input_ids, mask = _rows()
    build_eagle3_batch(runner, input_ids, mask)
    (seen_ids, seen_mask), = runner.calls
    assert torch.equal(seen_ids, input_ids) and torch.equal(seen_mask, mask)


def test_left_padding_is_rejected():
    input_ids = torch.tensor([[0, 0, 1, 2]])
    with pytest.raises(ValueError, match="right-padded"):
        build_eagle3_batch(FakeRunner(), input_ids, torch.tensor([[0, 0, 1, 1]]))


def test_mismatched_inputs_are_rejected():
    input_ids, mask = _rows()
    with pytest.raises(ValueError, match="must match"):
        build_eagle3_batch(FakeRunner(), input_ids, mask, loss_mask=mask[:, :3])
    with pytest.raises(ValueError, match=r"\[batch, seq_len\]"):
        build_eagle3_batch(FakeRunner(), input_ids, mask[:1])


def test_runner_breaking_the_shapes_is_a_failed_check():
    input_ids, mask = _rows()
    with pytest.raises(CheckFailedError, match=r"aux hidden states have shape \[2, 5, 8\].*needs \[2, 5, 12\]"):
        build_eagle3_batch(FakeRunner(aux_chunks=2), input_ids, mask)


# --- aux layer ids -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_layers", "expected"), [(8, [1, 3, 4]), (32, [1, 15, 28]), (80, [1, 39, 76]),
                                                      (7, [1, 2, 3])])
def test_default_aux_layer_ids(num_layers, expected):
    assert default_aux_layer_ids(num_layers) == expected
    assert resolve_aux_layer_ids(None, num_layers) == expected
    assert aux_layer_problems(expected, num_layers) == []


def test_target_config_still_exports_the_defaults():
    from eaglectl.checkpoint.target import default_aux_layer_ids as from_target_config

    assert from_target_config(32) == [1, 15, 28]


def test_explicit_ids_pass_through_in_order():
    assert resolve_aux_layer_ids([6, 0, 2], 8) == [6, 0, 2]


@pytest.mark.parametrize(("ids", "message"), [
    ([1, 2], "exactly 3"),
    ([1, 2, 3, 4], "exactly 3"),
    ([1, 2, 9], "out of bounds"),
    ([-1, 2, 3], "out of bounds"),
    ([1, 2, 7], "out of bounds"),  # N-1: SGLang never captures the last layer
    ([1, 2, 2], "not distinct"),
    ([1, 2, "3"], "integers"),
    ([1, 2, True], "integers"),
])
def test_invalid_ids_raise_config_error(ids, message):
    with pytest.raises(ConfigError, match=message):
        resolve_aux_layer_ids(ids, 8)


def test_last_layer_says_sglang_never_captures_it():
    with pytest.raises(ConfigError, match="never captures it"):
        resolve_aux_layer_ids([1, 2, 7], 8)


def test_every_problem_is_named():
    with pytest.raises(ConfigError) as info:
        resolve_aux_layer_ids([9, 9], 8)
    assert "exactly 3" in str(info.value) and "not distinct" in str(info.value) and "out of bounds" in str(info.value)


@pytest.mark.parametrize("num_layers", [4, 5, 6])
def test_shallow_target_rejects_the_defaults_but_accepts_explicit_ids(num_layers):
    with pytest.raises(ConfigError, match="too shallow") as info:
        resolve_aux_layer_ids(None, num_layers)
    assert info.value.hint and "--aux-layer-ids" in info.value.hint
    assert resolve_aux_layer_ids([0, 1, num_layers - 2], num_layers) == [0, 1, num_layers - 2]


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_target_too_shallow_for_any_ids(num_layers):
    with pytest.raises(ConfigError, match="too shallow"):
        resolve_aux_layer_ids([0, 1, 2], num_layers)


def test_ids_past_the_last_capturable_layer_are_named():
    assert any("never captures" in p for p in aux_layer_problems([1, 3, 7], 8))


# --- backend ---------------------------------------------------------------------------------------------------------


def test_backend_sets_the_default_aux_layers_on_the_runner():
    runner = FakeRunner()
    backend = Eagle3TargetBackend(runner)
    assert backend.aux_layer_ids == [1, 3, 4]
    assert runner.aux_ids == [1, 3, 4]


def test_backend_validates_ids_before_touching_the_runner():
    runner = FakeRunner()
    with pytest.raises(ConfigError, match="out of bounds"):
        Eagle3TargetBackend(runner, [1, 2, 7])
    assert runner.aux_ids is None


def test_backend_builds_batches():
    input_ids, mask = _rows()
    with Eagle3TargetBackend(FakeRunner(), [0, 2, 6]) as backend:
        batch = backend(input_ids, mask)
    assert batch.input_ids.tolist() == [[6, 7, 8, 9, 0], [2, 3, 0, 0, 0]]


def test_embedding_passes_through_unchanged():
    runner = FakeRunner()
    weight = Eagle3TargetBackend(runner).input_embedding_weight()
    assert weight is runner.embedding
    assert weight.shape == (VOCAB, HIDDEN)


def test_close_is_idempotent():
    runner = FakeRunner()
    backend = Eagle3TargetBackend(runner)
    backend.close()
    backend.close()
    assert runner.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        backend.build(*_rows())


def test_context_manager_closes_on_error():
    runner = FakeRunner()
    with pytest.raises(KeyError), Eagle3TargetBackend(runner):
        raise KeyError("boom")
    assert runner.closed == 1
