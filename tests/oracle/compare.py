"""Compare what SGLang's own code did with a head (tests/oracle/harness.py's record) with eaglectl's replay.

Pure: `compare(...)` takes the harness record, the head's config and stored shapes, the algorithm and the release,
replays the load with `eaglectl.engines.sglang.loader.simulate_load` and returns the disagreements, each naming
the head, the release and the parameter or stored name. No disagreement means SGLang's code confirmed the replay
for that head on that release:

  * start-up: SGLang failing to start (config, construction, or a load error) <-> a start-up problem or shape
    error in the replay, tensor by tensor for load errors; a replay problem that only shows at run time (fc
    skipped for equal widths, unsorted aux ids) is not a start-up failure;
  * names: every stored name SGLang loaded into a parameter is in `sim.loaded` mapped to that parameter (SGLang's
    fused qkv_proj / gate_up_proj names, as the replay writes them); every name reaching no parameter is in
    `sim.skipped` or `sim.ignored_by_design` (t2d), d2t is the replay's hot-token map; the stored names SGLang
    read are the ones eaglectl read;
  * parameters: the set SGLang builds and their shapes equal `expected_parameters`; a parameter left NaN is in
    `sim.uninitialized`, `sim.from_target`, `sim.unused` or `sim.zero_initialised`, each of those is left NaN by
    SGLang, and a zero-initialised one is all zeros after SGLang's construction;
  * values: the RoPE base SGLang's rotary embedding uses; `norm_output` honoured or not; which of embed_tokens and
    lm_head the worker replaces with the target's (the replay's from_target for a head that stores neither).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eaglectl.engines.sglang import rules
from eaglectl.engines.sglang.loader import (
    D2T_LENGTH,
    LoadSimulation,
    default_rope_base,
    expected_parameters,
    fc_bypassed,
    repeated_aux_ids,
    simulate_load,
    unsorted_aux_ids,
)
from eaglectl.enums import Algorithm

TARGET_SUPPLIED = ("model.embed_tokens.weight", "lm_head.weight")
_SHARDS = re.compile(r" \(shards .*\)$")
# replay problems about serving, not start-up, that no function of the loader module names
RUN_TIME_PREFIXES = ("eagle_config.use_aux_hidden_state is ", D2T_LENGTH)


@dataclass(frozen=True)
class Disagreement:
    head: str
    release: str
    subject: str  # the parameter, stored name or value
    sglang: str  # what SGLang's code did
    eaglectl: str  # what the replay says

    def __str__(self) -> str:
        return f"{self.head} on SGLang {self.release}: {self.subject}: SGLang {self.sglang}; eaglectl {self.eaglectl}"


def startup_problems(sim: LoadSimulation, cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The replay's problems that stop a server from starting: all of `sim.problems` but the ones that show only
    while serving (fc skipped when widths are equal, aux ids out of layer order or named twice)."""
    at_run_time = {why for why in (fc_bypassed(cfg, shapes), unsorted_aux_ids(cfg), repeated_aux_ids(cfg)) if why}
    return [p for p in sim.problems if p not in at_run_time and not p.startswith(RUN_TIME_PREFIXES)]


def expected_rope_base(cfg: dict[str, Any], release: str) -> float:
    """The RoPE base eaglectl says `release` runs the head with (rules.Eagle3Loader.rope_parameters): from
    `rope_parameters` when the release reads it and the config (as transformers 5 reads it) has it, else the
    top-level `rope_theta`, else the default of its config class (SGLang's 10000 for Llama)."""
    default = float(default_rope_base(cfg))
    params = cfg.get("rope_parameters")
    if rules.eagle3_loader(release).rope_parameters.value:
        # transformers 5 folds a legacy top-level rope_theta into rope_parameters
        if isinstance(params, dict) and params.get("rope_theta") is not None:
            return float(params["rope_theta"])
        return float(cfg["rope_theta"]) if cfg.get("rope_theta") is not None else default
    return float(cfg["rope_theta"]) if cfg.get("rope_theta") is not None else default


def target_supplied(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], algorithm: Algorithm,
                    release: str) -> set[str]:
    """Which of embed_tokens / lm_head the replay says the target supplies. `sim.from_target` lists only what
    nothing loaded, so this replays the head without its stored embeddings and head."""
    bare = {n: s for n, s in shapes.items()
            if not any(n == p or n == p.removeprefix("model.") for p in TARGET_SUPPLIED)}
    return set(simulate_load(cfg, bare, algorithm, release).from_target) & set(TARGET_SUPPLIED)


VOCAB_PADDING = 64  # layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE (0.5.9 l.43): pad_vocab_size
VOCAB_PARAMS = ("model.embed_tokens.weight", "lm_head.weight")


def _rows(spec: Any, param: str = "") -> tuple[int, ...]:
    """A replay parameter spec as SGLang's parameter shape (a fused spec: its shards stacked on dim 0). The replay
    gives the embedding and lm_head their vocab rows, which the weight loader checks a stored tensor against; SGLang
    builds the parameter with the rows padded to a multiple of VOCAB_PADDING (the padding rows zero-filled)."""
    if isinstance(spec, dict):
        shards = list(spec.values())
        return (sum(s[0] for s in shards), *shards[0][1:])
    if param in VOCAB_PARAMS and spec:
        return (-(-spec[0] // VOCAB_PADDING) * VOCAB_PADDING, *spec[1:])
    return tuple(spec)


def compare(head: str, release: str, result: dict[str, Any], cfg: dict[str, Any],
            shapes: dict[str, tuple[int, ...]], algorithm: Algorithm) -> list[Disagreement]:
    """Every way the harness record `result` (SGLang `release` on the head) differs from eaglectl's replay."""
    sim = simulate_load(cfg, shapes, algorithm, release)
    found: list[Disagreement] = []

    def differ(subject: str, sglang: str, eaglectl: str) -> None:
        found.append(Disagreement(head, release, subject, sglang, eaglectl))

    start = startup_problems(sim, cfg, shapes)
    if result.get("error"):  # SGLang stopped before loading finished
        if not start and not sim.shape_errors:
            differ(f"start-up ({result.get('stage')})", f"fails: {result['error']}",
                   "expects a clean start (no start-up problem, no shape error)")
        return found
    if result.get("stage") != "done":
        differ("harness", f"stopped at stage {result.get('stage')!r} without an error", "-")
        return found
    for p in start:
        differ("start-up", "builds the model and loads every tensor", f"says it fails to start: {p}")

    # --- load errors <-> shape errors, tensor by tensor ---
    errored = {e.split(": ", 1)[0]: e.split(": ", 1)[1] for e in result.get("load_errors", [])}
    for name, err in errored.items():
        if name not in sim.misshapen:
            differ(name, f"fails to load it ({err})", f"no shape error ({sim.loaded.get(name, 'not loaded')})")
    for name in sorted(sim.misshapen):
        if name not in errored:
            err = next((e for e in sim.shape_errors if e.startswith(f"{name}:")), name)
            differ(name, "loads it without an error", f"says the shape is refused ({err})")

    # --- stored names ---
    stored = set(result.get("stored_shapes", {}))
    for name in sorted(stored - set(shapes)):
        differ(name, "reads this stored tensor", "never saw it (not in the head's weights as eaglectl reads them)")
    for name in sorted(set(shapes) - stored):
        differ(name, "never reads this stored tensor", "replays it (it is in the head's weights)")
    for name, calls in sorted(result.get("stored_to_params", {}).items()):
        params = sorted({c[0] for c in calls})
        want = sim.loaded.get(name)
        if want is None:
            where = "skipped" if name in sim.skipped else "ignored by design" if name in sim.ignored_by_design \
                else "not replayed"
            differ(name, f"loads it into {', '.join(params)}", where)
        elif params != [want]:
            differ(name, f"loads it into {', '.join(params)}", f"maps it to {want}")
    hot = result.get("values", {}).get("hot_token_id_len") is not None
    for name in result.get("stored_names_not_reaching_any_param", []):
        if sim.loaded.get(name) == "hot_token_id":
            if not hot:
                differ(name, "reaches no parameter and sets no hot_token_id", "reads it as the hot-token map (d2t)")
        elif name in sim.loaded:
            differ(name, "loads it into no parameter", f"maps it to {sim.loaded[name]}")
        elif name not in sim.skipped and name not in sim.ignored_by_design:
            differ(name, "loads it into no parameter", "does not replay it")
    if hot != sim.hot_token_map:
        differ("hot_token_id", "sets it" if hot else "leaves it unset",
               "expects a d2t map" if sim.hot_token_map else "expects no d2t map")

    # --- parameters: the set, shapes, and what is left NaN ---
    built = {k: tuple(v) for k, v in result.get("param_shapes", {}).items()}
    expected = {k: _rows(v, k) for k, v in expected_parameters(cfg, algorithm, release).items()}
    for p in sorted(set(built) | set(expected)):
        if p not in expected:
            differ(p, f"builds it {list(built[p])}", "expects no such parameter")
        elif p not in built:
            differ(p, "builds no such parameter", f"expects it {list(expected[p])}")
        elif built[p] != expected[p]:
            differ(p, f"builds it {list(built[p])}", f"expects {list(expected[p])}")
    uninit = {_SHARDS.sub("", u) for u in sim.uninitialized}
    zero = set(sim.zero_initialised)
    explained = uninit | set(sim.from_target) | set(sim.unused) | zero
    nan = set(result.get("nan_params", []))
    partial = set(result.get("partially_loaded_params", {}))
    errored_params = {c[0] for n in errored for c in result.get("stored_to_params", {}).get(n, [])}
    for p in sorted(nan | partial):
        if p not in explained and p not in errored_params:
            differ(p, "leaves it unloaded" if p in nan else f"loads it partly ({result['partially_loaded_params'][p]})",
                   "says it is loaded")
    for p in sorted(explained & set(built)):
        if p not in nan and p not in partial:
            kind = ("uninitialised" if p in uninit else "from the target" if p in sim.from_target
                    else "zero-initialised" if p in zero else "unused")
            differ(p, "loads it", f"says it is {kind} (nothing loads it)")
    if "initially_zero_params" in result:
        for p in sorted(zero - set(result["initially_zero_params"])):
            differ(p, "builds it with non-zero values", "says it starts at zero")

    # --- values ---
    values = result.get("values", {})
    if algorithm is Algorithm.EAGLE3:
        base = values.get("rope_base")
        want_base = expected_rope_base(cfg, release)
        if base is None or float(base) != want_base:
            differ("RoPE base", f"uses {base}", f"expects {want_base}")
        if cfg.get("norm_output"):
            honoured = bool(values.get("norm_output"))
            if honoured != rules.eagle3_loader(release).norm_output.value:
                differ("norm_output", "honours it" if honoured else "ignores it",
                       "says it is honoured" if not honoured else "says it is ignored")
    worker = result.get("after_worker_init_lm_head", {})
    if worker and "error" not in worker:
        supplied = target_supplied(cfg, shapes, algorithm, release)
        tied = bool(cfg.get("tie_word_embeddings")) and algorithm is Algorithm.EAGLE3
        for param, key in (("model.embed_tokens.weight", "embed_from_target"),
                           ("lm_head.weight", "lm_head_from_target")):
            says = (("model.embed_tokens.weight" in supplied) if tied and param == "lm_head.weight"
                    else param in supplied)
            if bool(worker.get(key)) != says:
                differ(f"{param} after the worker's {worker.get('call')}",
                       "replaces it with the target's" if worker.get(key) else "keeps the draft's",
                       "says the target supplies it" if says else "says the draft's own is used")
    elif worker:
        differ("worker embedding sharing", f"fails: {worker['error']}", "-")
    return found
