"""The EAGLE-3 target supervision contract, independent of any inference engine.

A `TargetRunner` runs the frozen target model and returns, per token, the full-vocab logits and the
concatenated outputs of three decoder layers ("aux hidden states"); `build_eagle3_batch` turns that into the
training batch the drafter learns from. Any engine (Hugging Face, SGLang) that honours the runner protocol
produces the same batch, which is what `eaglectl probe-target` checks.

Conventions (the same as SGLang's EAGLE-3 capture):

* aux layer id k means the *output of decoder layer k* (0-based), i.e. Hugging Face's
  `output_hidden_states[k + 1]`; ids must lie in [0, N-2] because SGLang never captures layer N-1 (and HF's
  last hidden state is taken after the final norm, so it would not match either);
* rows are right-padded: every attention-mask row is ones followed by zeros.

Nothing here imports torch at module level: the CLI imports this module at start-up paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from eaglectl.checkpoint.target import default_aux_layer_ids, text_config
from eaglectl.enums import DTYPES, canonical_dtype
from eaglectl.errors import CheckFailedError, ConfigError

# The runners' dtype vocabulary is eaglectl's one (eaglectl.enums); the config helpers are the target reader's.
__all__ = ["DTYPES", "canonical_dtype", "default_aux_layer_ids", "text_config"]

if TYPE_CHECKING:
    import torch

NUM_AUX_LAYERS = 3
# The default ids [1, N//2-1, N-4] are distinct and inside [0, N-2] from this depth on.
MIN_LAYERS_FOR_DEFAULTS = 7
# Fewer layers than this leave no 3 distinct ids inside [0, N-2].
MIN_LAYERS = NUM_AUX_LAYERS + 1


@runtime_checkable
class TargetRunner(Protocol):
    """What the trainer and `probe-target` need from an engine running the frozen target model.

    `model` exposes at least `.config` (a transformers config, for the layer count, hidden size and vocab) and
    `.parameters()`. `forward_eagle3` returns *unshifted* tensors on the runner's device: logits [B, S, V] over the
    full vocab and aux hidden states [B, S, 3H] (the three layers concatenated in `set_aux_layers` order).
    Values at padded positions are unspecified. `close()` releases the engine and may be called more than once.
    """

    model: Any

    def set_aux_layers(self, ids: Sequence[int] | None) -> None: ...

    def forward_eagle3(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def input_embedding_weight(self) -> torch.Tensor: ...

    def close(self) -> None: ...


@dataclass
class Eagle3TargetBatch:
    """One EAGLE-3 training batch. Position i trains the drafter to predict from aux_hidden_states[:, i] and
    input_ids[:, i] (the *next* token) the distribution target_logits[:, i] (the target's prediction one step
    further). Shifted tensors end in a zero column, so the last position never contributes to the loss."""

    input_ids: torch.Tensor  # [B, S], shifted left by one, zero tail
    attention_mask: torch.Tensor  # [B, S], not shifted
    loss_mask: torch.Tensor  # [B, S], shifted left by one, zero tail
    aux_hidden_states: torch.Tensor  # [B, S, 3H], not shifted
    target_logits: torch.Tensor  # [B, S, V], shifted left by one, zero tail


def model_dims(model: Any) -> tuple[int, int, int]:
    """(num_hidden_layers, hidden_size, vocab_size) from a runner's `model.config`."""
    cfg = text_config(model.config)
    try:
        return int(cfg.num_hidden_layers), int(cfg.hidden_size), int(cfg.vocab_size)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ConfigError(f"target config lacks num_hidden_layers / hidden_size / vocab_size ({exc})") from exc


def aux_layer_problems(ids: Sequence[Any], num_layers: int) -> list[str]:
    """Every reason `ids` cannot be EAGLE-3 aux layers of an N-layer target (empty list: valid)."""
    ids = list(ids)
    problems = []
    if len(ids) != NUM_AUX_LAYERS:
        problems.append(f"aux layer ids {ids}: EAGLE-3 needs exactly {NUM_AUX_LAYERS}")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        problems.append(f"aux layer ids {ids} must be integers")
        return problems
    if len(set(ids)) != len(ids):
        problems.append(f"aux layer ids {ids} are not distinct")
    for i in ids:
        if i == num_layers - 1:
            problems.append(f"aux layer id {i} is the target's last layer; SGLang never captures it "
                            f"(out of bounds: ids must lie in [0, {num_layers - 2}])")
        elif not 0 <= i <= num_layers - 2:
            problems.append(f"aux layer id {i} is out of bounds for a {num_layers}-layer target "
                            f"([0, {num_layers - 2}])")
    return problems


def resolve_aux_layer_ids(ids: Sequence[int] | None, num_layers: int) -> list[int]:
    """The aux layer ids to capture: `ids` validated, or SGLang's defaults for an N-layer target.

    Raises ConfigError naming every problem ("exactly 3", "out of bounds", "not distinct", "too shallow").
    """
    if num_layers < MIN_LAYERS:
        raise ConfigError(f"the target has {num_layers} decoder layer(s), too shallow for EAGLE-3: it needs "
                          f"{NUM_AUX_LAYERS} distinct aux layers in [0, N-2], so at least {MIN_LAYERS} layers")
    if ids is None:
        chosen = default_aux_layer_ids(num_layers)
        if num_layers < MIN_LAYERS_FOR_DEFAULTS:
            raise ConfigError(
                f"the target has {num_layers} decoder layers, too shallow for the default aux layer ids {chosen} "
                f"(they must be distinct and in [0, {num_layers - 2}])",
                hint=f"pass {NUM_AUX_LAYERS} distinct ids explicitly, e.g. --aux-layer-ids 0 1 {num_layers - 2}")
        return chosen
    problems = aux_layer_problems(ids, num_layers)
    if problems:
        raise ConfigError("; ".join(problems))
    return list(ids)


def output_problems(logits: Any, aux: Any, *, batch: int, seq_len: int, vocab_size: int,
                    hidden_size: int) -> list[str]:
    """How a runner's `forward_eagle3` outputs break the contract's shapes (empty list: they do not)."""
    problems = []
    want_logits = (batch, seq_len, vocab_size)
    want_aux = (batch, seq_len, NUM_AUX_LAYERS * hidden_size)
    for name, tensor, want in (("logits", logits, want_logits), ("aux hidden states", aux, want_aux)):
        shape = tuple(getattr(tensor, "shape", ()) or ())
        if shape != want:
            problems.append(f"{name} have shape {list(shape)}, the contract needs {list(want)}")
    return problems


def row_lengths(attention_mask: Any) -> list[int]:
    """Right-padded rows' real lengths (ValueError on left padding or holes).

    One tensor op, then byte searches per row: small CPU tensor ops cost ~0.1 ms each inside an SGLang process,
    and this runs while the GPU waits."""
    import torch

    mask = attention_mask.to(device="cpu", dtype=torch.bool).contiguous()
    if mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq_len], got {list(mask.shape)}")
    width = mask.shape[1]
    raw = bytes(tensor_bytes(mask)) if mask.numel() else b""
    lengths = []
    for i in range(mask.shape[0]):
        row = raw[i * width:(i + 1) * width]
        n = row.find(0)
        n = width if n < 0 else n
        if row.find(1, n) >= 0:
            raise ValueError("attention_mask rows must be right-padded (ones, then zeros); got left padding or "
                             "holes")
        lengths.append(n)
    return lengths


def check_right_padded(attention_mask: torch.Tensor) -> None:
    """Reject left padding and holes: the shift semantics assume rows of ones followed by zeros."""
    row_lengths(attention_mask)


def tensor_bytes(t: Any) -> Any:
    """A read-only buffer over a contiguous CPU tensor's bytes (no numpy needed)."""
    import ctypes

    return (ctypes.c_char * (t.numel() * t.element_size())).from_address(t.data_ptr())


def shift_left(t: torch.Tensor) -> torch.Tensor:
    """t[:, 1:] followed by one zero column along the sequence dimension."""
    import torch

    return torch.cat([t[:, 1:], torch.zeros_like(t[:, :1])], dim=1)


def build_eagle3_batch(runner: TargetRunner, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       loss_mask: torch.Tensor | None = None) -> Eagle3TargetBatch:
    """Run the target once and shift what the drafter predicts; `loss_mask` defaults to `attention_mask`.

    Raises CheckFailedError when the runner's outputs break the contract (shapes), ValueError on bad inputs.
    """
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(f"input_ids {list(input_ids.shape)} and attention_mask {list(attention_mask.shape)} must "
                         f"both be [batch, seq_len]")
    if loss_mask is None:
        loss_mask = attention_mask
    elif loss_mask.shape != input_ids.shape:
        raise ValueError(f"loss_mask {list(loss_mask.shape)} must match input_ids {list(input_ids.shape)}")
    check_right_padded(attention_mask)
    logits, aux = runner.forward_eagle3(input_ids, attention_mask)
    _, hidden, vocab = model_dims(runner.model)
    batch, seq_len = input_ids.shape
    problems = output_problems(logits, aux, batch=batch, seq_len=seq_len, vocab_size=vocab, hidden_size=hidden)
    if problems:
        raise CheckFailedError(f"target runner {type(runner).__name__} breaks the EAGLE-3 contract: "
                               + "; ".join(problems))
    return Eagle3TargetBatch(input_ids=shift_left(input_ids), attention_mask=attention_mask,
                             loss_mask=shift_left(loss_mask), aux_hidden_states=aux, target_logits=shift_left(logits))


class Eagle3TargetBackend:
    """A runner plus the contract around it: aux ids resolved (defaults or validated) before the first batch,
    batches built with the shift semantics, the embedding passed through, and an idempotent `close`."""

    def __init__(self, runner: TargetRunner, aux_layer_ids: Sequence[int] | None = None) -> None:
        self.runner = runner
        self.num_layers, self.hidden_size, self.vocab_size = model_dims(runner.model)
        self.aux_layer_ids = resolve_aux_layer_ids(aux_layer_ids, self.num_layers)
        runner.set_aux_layers(self.aux_layer_ids)
        self._closed = False

    def build(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              loss_mask: torch.Tensor | None = None) -> Eagle3TargetBatch:
        if self._closed:
            raise RuntimeError("the target backend is closed")
        return build_eagle3_batch(self.runner, input_ids, attention_mask, loss_mask)

    __call__ = build

    def input_embedding_weight(self) -> torch.Tensor:
        """The target's input embedding [V, H]: the drafter embeds tokens with it (frozen)."""
        return self.runner.input_embedding_weight()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.runner.close()

    def __enter__(self) -> Eagle3TargetBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
