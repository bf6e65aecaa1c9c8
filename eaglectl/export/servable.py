"""Whether a planned export would be served right: the failure-mode checks over the plan's output (not the
checkpoint as stored) and SGLang's newest loader replayed over the planned names and shapes."""

from __future__ import annotations

from typing import Any

from eaglectl.checkpoint.names import parse_name
from eaglectl.checkpoint.resolve import Checkpoint
from eaglectl.checks.failure_modes import HeadView, head_findings, specforge_findings
from eaglectl.engines.sglang.architectures import own_loader
from eaglectl.engines.sglang.loader import NEWEST_KNOWN, simulate_load
from eaglectl.enums import ExportFormat, Severity
from eaglectl.errors import CheckpointError, UnsupportedDraftError
from eaglectl.export.plan import NO_PARAMETER, ExportPlan


def plan_view(ckpt: Checkpoint, plan: ExportPlan) -> HeadView:
    assert ckpt.weights is not None
    ws = ckpt.weights
    by_base = {parse_name(t.name).base: t for t in plan.tensors}

    def load(base: str) -> Any:
        t = by_base[base]
        return plan.generated[t.name] if t.source is None else ws.load_array(t.source)

    config = plan.config
    if plan.format is ExportFormat.speculators:  # the checks read the flat dialect: as vLLM flattens it
        from eaglectl.engines.vllm.loader import parse_config

        config = parse_config(plan.config).config
    return HeadView(config, plan.algorithm, {b: t.shape for b, t in by_base.items()},
                    load=None if ws.remote else load,
                    source=ckpt.source, config_problem=ckpt.config_problem, planned=True,
                    embeddings_dropped=any(d.reason.startswith("--drop-embeddings") for d in plan.dropped),
                    unplaced=[d.name for d in plan.dropped if d.reason == NO_PARAMETER])


def export_warnings(ckpt: Checkpoint, plan: ExportPlan) -> list[str]:
    """The warning findings `export` repeats on stderr: the head as written would be served in a way that may not
    be the trained one, and the export cannot tell which (t2d disagreeing with d2t), or the config it was trained
    with meant something else to its trainer (SpecForge's norm_output)."""
    return [f"{f.code}: {f.message}" for f in [*head_findings(plan_view(ckpt, plan)), *specforge_findings(ckpt)]
            if f.severity is Severity.warning and f.code in ("t2d-mismatch", "specforge-norm-output")]


# Failure modes that are SGLang's alone: a speculators export, for vLLM, is not refused for them.
SGLANG_ONLY = ("norm-before-residual", "speculators-format", "aux-ids-top-level", "p-eagle", "weight-not-loaded")


def refuse(ckpt: Checkpoint, plan: ExportPlan, *, only: tuple[str, ...] | None = None,
           skip: tuple[str, ...] = ()) -> None:
    """Raise for a failure mode the export cannot fix: the planned output would still be served wrong (`skip`:
    modes that do not matter where it is going)."""
    skip = SGLANG_ONLY if plan.format is ExportFormat.speculators else skip
    errors = [f for f in head_findings(plan_view(ckpt, plan))
              if f.severity is Severity.error and (only is None or f.code in only) and f.code not in skip]
    if errors:
        more = f" (and {len(errors) - 1} more: {', '.join(f.code for f in errors[1:])})" if len(errors) > 1 else ""
        raise UnsupportedDraftError(f"{ckpt.source}: {errors[0].code}: {errors[0].message}{more}", hint=errors[0].fix)


def require_servable(ckpt: Checkpoint, plan: ExportPlan) -> None:
    """`require_sglang_servable`, or for a speculators plan the same for vLLM and speculators."""
    if plan.format is ExportFormat.speculators:
        require_vllm_servable(ckpt, plan)
    else:
        require_sglang_servable(ckpt, plan)


def require_vllm_servable(ckpt: Checkpoint, plan: ExportPlan) -> None:
    """Refuse a plan that vLLM (0.33, replayed) would fail on or load incompletely (and a speculators plan that
    speculators' own loader would refuse): the failure modes that are no SGLang matter first."""
    from eaglectl.engines.vllm.loader import simulate_load
    from eaglectl.engines.vllm.speculators import check_keys

    sim = simulate_load(plan.config, plan.shapes)
    if sim.errors:
        raise CheckpointError(f"vLLM {sim.release} would not load the export: {sim.errors[0]}")
    refuse(ckpt, plan, skip=SGLANG_ONLY)
    if sim.uninitialized:
        raise CheckpointError(f"vLLM {sim.release} would leave parameters uninitialised: "
                              f"{', '.join(sim.uninitialized)}")
    keys = check_keys(plan.config, plan.shapes) if plan.format is ExportFormat.speculators else None
    if keys is not None and (keys.shape_errors or keys.unexpected):
        raise CheckpointError(f"speculators would not load the export: {(keys.shape_errors + keys.unexpected)[0]}")


def require_sglang_servable(ckpt: Checkpoint, plan: ExportPlan) -> None:
    """Refuse to write a head SGLang would serve wrongly: shapes that contradict the config first (they change
    what SGLang builds), then the known failure modes (their message names the cause), then parameters the
    newest known release would leave uninitialised (its loader has every feature: what it cannot load, no
    known release can)."""
    sim = None if own_loader(plan.config) is not None else simulate_load(  # own loaders are not replayed
        plan.config, plan.shapes, plan.algorithm, NEWEST_KNOWN)
    if sim is not None and sim.shape_errors:
        raise CheckpointError(f"tensor shapes contradict the config: {sim.shape_errors[0]}")
    refuse(ckpt, plan)
    if sim is not None and sim.uninitialized:
        raise CheckpointError(f"missing required tensors: {', '.join(sim.uninitialized)}")
    if sim is not None and sim.problems:
        raise CheckpointError(sim.problems[0])
