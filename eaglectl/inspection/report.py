"""`inspect`: what a drafter checkpoint is, and everything that would go wrong serving it with SGLang."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eaglectl.checkpoint.names import layer_indices, parse_name
from eaglectl.checkpoint.peagle import vllm_route
from eaglectl.checkpoint.resolve import Checkpoint, aux_layer_ids_of, detect_algorithm, is_p_eagle, resolve
from eaglectl.checkpoint.target import TargetInfo, load_target
from eaglectl.checkpoint.values import non_finite_message, scan_non_finite, scanned_tensors
from eaglectl.checkpoint.weights import FLOAT_DTYPES
from eaglectl.checks.failure_modes import (
    aux_id_findings,
    checkpoint_view,
    head_findings,
    specforge_findings,
    target_capture_findings,
    unpinned_aux_findings,
)
from eaglectl.checks.findings import Finding
from eaglectl.engines.sglang import aux_ids, rules
from eaglectl.engines.sglang.architectures import own_loader
from eaglectl.engines.sglang.loader import (
    ARCHITECTURE,
    NEWEST_KNOWN,
    ReleaseSpan,
    context_length,
    embeddings_shared,
    ignored_config,
    minimum_release,
    mlp_bias,
    replay_releases,
    serving_spans,
    simulate_load,
)
from eaglectl.enums import Algorithm, Layout, Severity
from eaglectl.errors import EaglectlError
from eaglectl.export.outputs import read_manifest, source_layer_count
from eaglectl.export.plan import ExportPlan, build_plan
from eaglectl.export.servable import plan_view
from eaglectl.hub import HubSource


@dataclass
class TensorGroup:
    group: str
    count: int
    params: int
    bytes: int
    dtypes: list[str]


@dataclass
class ConfigSummary:
    architectures: Any
    model_type: Any
    hidden_size: Any
    num_hidden_layers: Any
    layers_in_weights: int
    vocab_size: Any
    draft_vocab_size: Any
    target_hidden_size: Any
    aux_layer_ids: list[int] | None
    torch_dtype: Any
    max_position_embeddings: Any
    tie_word_embeddings: Any


@dataclass
class LoaderView:
    """One span of releases whose loaders do the same with the stored checkpoint."""

    version: str  # first release of the span
    last: str  # last release of the span
    loaded: int
    skipped: list[str]
    uninitialized: list[str]
    from_target: list[str]
    ignored_config: list[str] = field(default_factory=list)
    ok: bool = False


@dataclass
class SGLangSupport:
    """Which known SGLang releases serve the head in the form eaglectl hands to SGLang (after export)."""

    serves: list[str]  # release spans that load it completely, e.g. ["0.5.12–0.5.23"]
    minimum: str | None  # oldest release whose loader has every feature the head needs
    needs: list[str]  # the features that set `minimum`
    newest_known: str = rules.NEWEST_KNOWN


@dataclass
class VllmVerdict:
    """What vLLM would do with one form of the head (see eaglectl.engines.vllm.loader)."""

    ok: bool  # loads completely and is fed the layers it was trained on
    capture: list[int] | None  # the target layers captured (vLLM numbering; None: the target's default)
    summary: str  # a few words: "loads completely", "fails to start", ...
    problems: list[str] = field(default_factory=list)


@dataclass
class VllmSupport:
    """vLLM's verdict beside SGLang's: the directory as stored (None: vLLM cannot be pointed at it) and the form
    `eaglectl export` writes (None: export refuses the head)."""

    release: str
    as_stored: VllmVerdict | None
    after_export: VllmVerdict | None
    export_format: str = "sglang"  # the export format the after-export verdict is for
    force: bool = False  # the directory is SGLang-ready as it is: only `export --force` writes the vLLM keys
    trained: list[int] | None = None  # the layers the head was trained on (vLLM numbering), when recorded


@dataclass
class InspectReport:
    source: str
    layout: Layout
    paths: dict[str, str | None]
    algorithm: Algorithm | None = None
    algorithm_reason: str | None = None
    p_eagle: str | None = None
    sglang_ready: bool = False
    config: ConfigSummary | None = None
    tensors: list[TensorGroup] = field(default_factory=list)
    total_params: int = 0
    total_bytes: int = 0
    loader_as_is: list[LoaderView] = field(default_factory=list)
    sglang: SGLangSupport | None = None
    vllm: VllmSupport | None = None
    export_preview: dict[str, Any] | None = None
    target: TargetInfo | None = None
    hub: HubSource | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.error for f in self.findings)


def inspect_checkpoint(path: str, *, target: str | None = None, revision: str | None = None,
                       draft_config: str | None = None) -> InspectReport:
    ckpt = resolve(path, revision=revision, headers_only=True, draft_config=draft_config)
    report = InspectReport(source=ckpt.source, layout=ckpt.layout, paths=_paths(ckpt), hub=ckpt.hub)
    if ckpt.is_remote:
        report.findings.append(remote_finding(ckpt))
    assert ckpt.weights is not None
    add = report.findings.append
    report.algorithm, report.algorithm_reason = detect_algorithm(ckpt)
    report.tensors, report.total_params, report.total_bytes = _groups(ckpt)
    report.config = _summary(ckpt)
    report.p_eagle = is_p_eagle(ckpt)
    if report.p_eagle:
        add(Finding("p-eagle", Severity.error, f"P-EAGLE (parallel drafting) head: {report.p_eagle}; SGLang cannot "
                    "serve it (it ignores mask_hidden / mask_token_id)", vllm_route(ckpt, target)))
        report.vllm = vllm_support(ckpt, None, None)
        return report
    plan: ExportPlan | None = None
    try:
        plan = build_plan(ckpt)
    except EaglectlError as exc:
        add(Finding("unservable", Severity.error, str(exc), exc.hint))
    algo = plan.algorithm if plan else report.algorithm
    own = own_loader(ckpt.config)
    if algo is not None and own is None:
        _as_is_findings(ckpt, algo, plan, report)
    if plan is not None and own is None:
        _plan_findings(ckpt, plan, report)
    _failure_mode_findings(ckpt, algo, plan, report)
    _dtype_findings(ckpt, report)
    _value_findings(ckpt, plan, report)
    if target:
        report.target = load_target(target)
        _target_findings(ckpt, plan, report.target, report)
    refused = {f.code for f in report.findings if f.severity is Severity.error} & {"norm-before-residual"}
    report.vllm = vllm_support(ckpt, None if refused else plan, report.target)
    from eaglectl.export.exporter import servable_as_is

    # A head served by a loader eaglectl does not replay is never called ready: nothing verified its names.
    report.sglang_ready = bool(plan and own is None and servable_as_is(ckpt, plan) and report.ok)
    if report.sglang_ready and ckpt.layout is Layout.hf:
        report.layout = Layout.sglang_ready
    return report


def vllm_support(ckpt: Checkpoint, plan: ExportPlan | None, target: TargetInfo | None) -> VllmSupport | None:
    """vLLM's verdict on the head as stored and as `export` writes it (EAGLE-3 heads only). `plan`: the SGLang
    export's; None where that export refuses the head (P-EAGLE, norm_before_residual): then the speculators
    export's, which vLLM reads."""
    from eaglectl.engines.vllm.loader import RELEASE, simulate_load, trained_capture
    from eaglectl.enums import ExportFormat

    if (plan.algorithm if plan else detect_algorithm(ckpt)[0]) is not Algorithm.EAGLE3 or ckpt.weights is None:
        return None
    fmt = ExportFormat.sglang
    if plan is None and not ckpt.weights.remote:
        try:
            plan, fmt = build_plan(ckpt, fmt=ExportFormat.speculators), ExportFormat.speculators
        except EaglectlError:
            plan = None
    known = target is not None and target.local
    vocab = target.vocab_size if known and target else None
    layers = target.num_layers if known and target else None
    raw = ckpt.raw_config if ckpt.raw_config is not None else ckpt.config
    as_stored = None
    if ckpt.layout is not Layout.specforge_training:  # a training state is no directory vLLM reads
        shapes = {n: t.shape for n, t in ckpt.weights.tensors.items()}
        as_stored = _verdict(simulate_load(raw, shapes, target_vocab=vocab, target_layers=layers))
    after = (_verdict(simulate_load(plan.config, plan.shapes, target_vocab=vocab, target_layers=layers))
             if plan is not None else None)
    from eaglectl.export.exporter import servable_as_is

    force = plan is not None and servable_as_is(ckpt, plan)
    return VllmSupport(RELEASE, as_stored, after, export_format=fmt.value,
                       trained=trained_capture(plan.config if plan else raw), force=force)


def _verdict(sim) -> VllmVerdict:
    problems = [*sim.errors, *(f"leaves {p} uninitialised" for p in sim.uninitialized), *sim.warnings]
    if sim.errors:
        summary = "fails to start" if sim.model_class is None else "fails to load its weights"
    elif sim.model_class is None:
        summary = "not replayed (" + "; ".join(sim.notes[-1:]) + ")"
    elif sim.uninitialized:
        summary = f"leaves {len(sim.uninitialized)} parameter(s) uninitialised"
    elif sim.warnings and sim.trained is not None:
        summary = ("reads no aux ids: captures the target's default layers" if sim.capture is None
                   else "captures other target layers than trained")
    elif sim.warnings:
        summary = sim.warnings[0]
    else:
        summary = "loads completely"
    return VllmVerdict(sim.ok, sim.capture, summary, problems)


def remote_finding(ckpt: Checkpoint) -> Finding:
    """What an inspect of a Hub drafter read remotely checked, and what it could not without the weight data."""
    src = ckpt.hub
    at = f"@{src.commit[:12]}" if src and src.commit else ""
    return Finding("headers-only", Severity.info,
                   f"read from the Hub without downloading weights: config.json, the meta file if any, and the "
                   f"safetensors headers of {ckpt.hub_id}{at}. Not checked without the data: NaN / Inf values, and "
                   f"the values of d2t (a never-filled all-zero map; ids within the vocab)",
                   f"{_export_cmd(ckpt).removeprefix('run ')} downloads the drafter's files and checks them all")


def _failure_mode_findings(ckpt: Checkpoint, algo: Algorithm | None, plan: ExportPlan | None,
                           report: InspectReport) -> None:
    """The failure modes of the head as stored, then those the export would not fix (refused by export)."""
    found = head_findings(checkpoint_view(ckpt, algo))
    if plan is not None:
        codes = {f.code for f in found}
        found += [f for f in head_findings(plan_view(ckpt, plan))
                  if f.severity is Severity.error and f.code not in codes]
    report.findings.extend([*found, *specforge_findings(ckpt)])


def _paths(ckpt: Checkpoint) -> dict[str, str | None]:
    ws = ckpt.weights
    return {
        "root": str(ckpt.root) if ckpt.root else None,
        "model_dir": str(ckpt.model_dir) if ckpt.model_dir else None,
        "config": str(ckpt.config_path) if ckpt.config_path else None,
        "weights": ", ".join(str(f) for f in ws.files) if ws else None,
        "index": str(ws.index_file) if ws and ws.index_file else None,
        "meta": str(ckpt.meta.path) if ckpt.meta else None,
        "hub_id": ckpt.hub_id,
    }


def _groups(ckpt: Checkpoint) -> tuple[list[TensorGroup], int, int]:
    assert ckpt.weights is not None
    groups: dict[str, list] = {}
    for name, info in ckpt.weights.tensors.items():
        p = parse_name(name)
        key = f"layers.{p.layer}" if p.layer is not None else (p.base.split(".")[0] if p.known else "other")
        groups.setdefault(key, []).append(info)
    out = [TensorGroup(k, len(v), sum(t.numel for t in v), sum(t.nbytes for t in v), sorted({t.dtype for t in v}))
           for k, v in sorted(groups.items())]
    return out, sum(g.params for g in out), sum(g.bytes for g in out)


def _summary(ckpt: Checkpoint) -> ConfigSummary:
    c = ckpt.config
    assert ckpt.weights is not None
    return ConfigSummary(
        architectures=c.get("architectures"), model_type=c.get("model_type"), hidden_size=c.get("hidden_size"),
        num_hidden_layers=c.get("num_hidden_layers"), layers_in_weights=len(layer_indices(ckpt.weights.tensors)),
        vocab_size=c.get("vocab_size"), draft_vocab_size=c.get("draft_vocab_size"),
        target_hidden_size=c.get("target_hidden_size"),
        aux_layer_ids=aux_layer_ids_of(c) or (ckpt.meta.aux_layer_ids if ckpt.meta else None),
        torch_dtype=c.get("torch_dtype") or c.get("dtype"), max_position_embeddings=c.get("max_position_embeddings"),
        tie_word_embeddings=c.get("tie_word_embeddings"))


def _export_cmd(ckpt: Checkpoint) -> str:
    from eaglectl.output import shell_join  # as serve --print-only quotes: `$'...'` for bytes that are not UTF-8

    rev = ["--revision", ckpt.hub.revision] if ckpt.hub and ckpt.hub.revision else []
    return f"run `{shell_join(['eaglectl', 'export', ckpt.source, *rev])}`"


def _as_is_findings(ckpt: Checkpoint, algo: Algorithm, plan: ExportPlan | None, report: InspectReport) -> None:
    assert ckpt.weights is not None
    add, fix = report.findings.append, _export_cmd(ckpt)
    cfg = ckpt.config
    want = ARCHITECTURE[algo]
    archs = cfg.get("architectures")
    if archs != [want]:
        add(Finding("architectures", Severity.warning,
                    f"architectures is {archs!r}; SGLang needs [{want!r}] for {algo.value} "
                    f"(any other name either fails to start or builds the wrong model)", fix))
    if plan is not None and cfg.get("num_hidden_layers") != plan.num_layers:
        add(Finding("num-hidden-layers", Severity.warning,
                    f"num_hidden_layers is {cfg.get('num_hidden_layers')!r} but the weights hold {plan.num_layers} "
                    f"layer(s); SGLang builds the config's count and leaves the extra layers uninitialised without "
                    f"an error (accept length ~1.0)", fix))
    shapes = {n: t.shape for n, t in ckpt.weights.tensors.items()}
    skipped: dict[str, list[tuple[str, str]]] = {}
    weights = [n for n in shapes if parse_name(n).base not in ("d2t", "t2d")]  # the maps are not the head
    nothing: list[tuple[str, str]] = []  # release spans that would load none of them
    minimum, _ = minimum_release(plan.config if plan else cfg, [*shapes, *(plan.shapes if plan else ())], algo)
    for span in replay_releases(cfg, shapes, algo):
        sim = span.sim
        report.loader_as_is.append(LoaderView(span.first, span.last, len(sim.loaded), sim.skipped, sim.uninitialized,
                                              sim.from_target, sim.ignored_config, sim.ok))
        if _can_serve(span, minimum):  # an older release lacks a feature the head needs: its own finding says so
            for name in sim.skipped:
                skipped.setdefault(name, []).append((span.first, span.last))
            if not any(n in sim.loaded for n in weights):
                nothing.append((span.first, span.last))
    # input_norm.weight (norm-before-fc) and a tied head's lm_head.weight (tied-lm-head) have their own findings
    own = {"input_norm.weight", *(["lm_head.weight"] if cfg.get("tie_word_embeddings") is True else [])}
    # and what the export writes but SGLang still skips: weight-not-loaded names it (no export fixes it)
    still = set(simulate_load(plan.config, plan.shapes, algo, NEWEST_KNOWN).skipped) if plan is not None else set()
    kept = {t.source for t in plan.tensors if t.name in still} if plan is not None else set()
    renamable = {n: v for n, v in skipped.items()
                 if parse_name(n).known and parse_name(n).base not in own and n not in kept}
    unknown = [n for n in skipped if not parse_name(n).known and not mlp_bias(parse_name(n).base)]
    if weights and nothing:
        add(Finding("loads-nothing", Severity.error,
                    f"as stored, SGLang ({_spans_text(nothing)}) would load none of the head's {len(weights)} weight "
                    f"tensor(s) ({', '.join(weights[:3])}{' ...' if len(weights) > 3 else ''}): it would serve a "
                    f"randomly initialised head (accept length ~1.0, no error)",
                    f"{fix} and serve its output (it writes the names SGLang's loader matches)"))
    if renamable:
        listed = ", ".join(f"{n} ({_spans_text(v)})" for n, v in list(renamable.items())[:4])
        more = f" and {len(renamable) - 4} more" if len(renamable) > 4 else ""
        add(Finding("skipped-tensors", Severity.warning,
                    f"SGLang's loader would skip {len(renamable)} tensor(s) without a word: {listed}{more}",
                    f"{fix} (it writes the names SGLang's loader matches)"))
    if unknown:
        add(Finding("unused-tensors", Severity.info,
                    f"{len(unknown)} tensor(s) no SGLang parameter takes: {', '.join(unknown[:8])}",
                    "export drops them and lists each one"))
    if algo is Algorithm.EAGLE3:
        has_d2t = any(parse_name(n).base == "d2t" for n in ckpt.weights.tensors)
        vocab, dv = cfg.get("vocab_size"), (plan.config.get("draft_vocab_size") if plan else None)
        if not has_d2t and isinstance(vocab, int) and isinstance(dv, int) and dv < vocab:
            if plan is not None and "d2t" in plan.generated:
                add(Finding("missing-d2t", Severity.warning,
                            f"draft vocab {dv} < vocab {vocab} but no d2t tensor: SGLang would read draft ids as "
                            f"target ids", f"{fix} (it builds d2t from {plan.token_map_source})"))
            else:
                add(Finding("missing-d2t", Severity.error,
                            f"draft vocab {dv} < vocab {vocab} but there is no d2t tensor and no meta file with "
                            f"selected_token_ids to build it from", "add eagle_meta.pt beside the checkpoint"))
        add(Finding("token-map-ignored", Severity.info,
                    "SGLang ignores --speculative-token-map for EAGLE3; the draft vocab comes from the d2t tensor",
                    None))


def _plan_findings(ckpt: Checkpoint, plan: ExportPlan, report: InspectReport) -> None:
    add = report.findings.append
    uninit: set[str] = set()
    spans = replay_releases(plan.config, plan.shapes, plan.algorithm)
    assert ckpt.weights is not None
    names = [*ckpt.weights.tensors, *plan.shapes]  # stored names too: the plan drops what it cannot place
    for span in spans:
        span.sim.ignored_config = ignored_config(plan.config, plan.algorithm, span.first, names)
    minimum, needs = minimum_release(plan.config, names, plan.algorithm)
    shape_seen: set[str] = set()
    for span in reversed(spans):  # newest first: an error in every release is named with the newest
        if not _can_serve(span, minimum):
            continue  # a release older than the head needs: the sglang-minimum finding names it
        for err in span.sim.shape_errors:
            key = err.replace(f"SGLang {span.first} expects", "SGLang expects")
            if key not in shape_seen:
                shape_seen.add(key)
                add(Finding("shape", Severity.error, err.replace(f"SGLang {span.first} expects",
                                                                 f"SGLang {span.last} expects")))
        uninit.update(span.sim.uninitialized)
    for span in spans:
        for prob in span.sim.problems:
            older = bool(minimum) and rules.older(span.last, minimum)
            add(Finding("layers" if "layer" in prob else "config", Severity.warning if older else Severity.error,
                        f"SGLang {span.label}: {prob.replace(f'SGLang {span.first} ', '')}",
                        f"serve with SGLang >= {minimum}" if older else None))
    if uninit:
        add(Finding("missing-tensors", Severity.error,
                    f"required tensors missing, SGLang would leave them uninitialised: {', '.join(sorted(uninit))}"))
    report.findings.extend(release_findings(spans, minimum, needs))
    report.sglang = SGLangSupport(serving_spans(spans), minimum or None, needs)
    embed = [t for t in plan.tensors if t.name == "embed_tokens.weight"]
    if embed:
        shared = plan.algorithm is Algorithm.EAGLE or embeddings_shared(plan.config)
        add(Finding("embeddings", Severity.info,
                    f"draft embeddings present {list(embed[0].shape)}; SGLang replaces them with the target's",
                    "export --drop-embeddings saves the space") if shared else
            Finding("embeddings", Severity.info,
                    f"draft embeddings present {list(embed[0].shape)}; SGLang uses them (target_hidden_size "
                    f"{plan.config.get('target_hidden_size')} != hidden_size: the target's cannot be shared), so "
                    f"they must stay"))


def release_findings(spans: list[ReleaseSpan], minimum: str, needs: list[str]) -> list[Finding]:
    """What depends on the SGLang release: the minimum one a head's features need, and releases newer than
    one that loads the head but that would mis-load it."""
    found = []
    if minimum and needs and minimum != rules.OLDEST_SUPPORTED:
        older = [s for s in spans if rules.older(s.first, minimum)]
        what = "; ".join(_issues(older[0].sim)[:2]).replace(f"SGLang {older[0].first} ", "") if older else ""
        found.append(Finding(
            "sglang-minimum", Severity.warning,
            f"needs SGLang >= {minimum} ({', '.join(needs)})" + (f"; SGLang {older[0].label} {what}" if what else ""),
            f"serve with SGLang >= {minimum}"))
    for i, span in enumerate(spans):
        earlier_ok = [s for s in spans[:i] if s.sim.ok]
        if not span.sim.ok and earlier_ok:
            found.append(Finding(
                "sglang-newer-misloads", Severity.warning,
                f"SGLang {span.label} would load this head wrong ({'; '.join(_issues(span.sim)[:2])}), though "
                f"{earlier_ok[-1].label} loads it", f"serve with SGLang {earlier_ok[-1].label}, or fix the config"))
    return found


def _can_serve(span: ReleaseSpan, minimum: str) -> bool:
    """The span reaches the minimum release the head's features need (or no known release has them all)."""
    return not minimum or not rules.older(span.last, minimum)


def _issues(sim) -> list[str]:
    return ([f"ignores config {k}" for k in sim.ignored_config] + [f"skips {n}" for n in sim.skipped]
            + [f"leaves {n} uninitialised" for n in sim.uninitialized] + [f"loads {n} twice" for n in sim.overwritten]
            + sim.shape_errors + sim.problems)


def _dtype_findings(ckpt: Checkpoint, report: InspectReport) -> None:
    assert ckpt.weights is not None
    floats = sorted({t.dtype for t in ckpt.weights.tensors.values() if t.dtype in FLOAT_DTYPES})
    if len(floats) > 1:
        report.findings.append(Finding("dtype-mix", Severity.warning,
                                       f"floating tensors mix dtypes {floats}; SGLang casts all to --dtype",
                                       "export --dtype bf16 makes them uniform"))


def _value_findings(ckpt: Checkpoint, plan: ExportPlan | None, report: InspectReport) -> None:
    """Scan only what SGLang would load: the planned tensors whose shapes it accepts. A tensor nothing takes
    (dropped by export) or one of the wrong shape (an error already) is never read, however large."""
    assert ckpt.weights is not None
    if plan is None or ckpt.weights.remote:  # remote_finding says the values were not read
        return
    sim = simulate_load(plan.config, plan.shapes, plan.algorithm, NEWEST_KNOWN)
    taken = [t.source for t in plan.tensors if t.source and t.name in sim.loaded and t.name not in sim.misshapen]
    found = scan_non_finite(ckpt.weights, scanned_tensors(ckpt.weights, taken))
    if found:
        report.findings.append(Finding("non-finite", Severity.warning, non_finite_message(found),
                                       "re-export from an earlier training checkpoint (the run diverged)"))


def _target_findings(ckpt: Checkpoint, plan: ExportPlan | None, t: TargetInfo, report: InspectReport, *,
                     version: str | None = None, cuda_graph: bool = True) -> None:
    add = report.findings.append
    if not t.local:
        add(Finding("target-remote", Severity.info, t.note or f"target {t.source} is not local; target checks skipped"))
        return
    if t.note:  # a Hub target checked from the local cache: which config was read
        add(Finding("target-cached", Severity.info, t.note))
    # the release that will serve it reads rope_parameters: nothing to say (only a transformers-4 release is fooled)
    if t.rope_only_in_parameters and (version is None or not rules.eagle3_loader(version).rope_parameters.value):
        add(Finding("target-rope-parameters-only", Severity.warning,
                    f"target: {t.rope_only_in_parameters} (a transformers 5 config): SGLang 0.5.9 (transformers "
                    f"4.57.1) runs the target itself with RoPE base 10000 and no scaling, without an error",
                    "serve with SGLang >= 0.5.10, or add rope_theta (and rope_scaling) to the target's config.json"))
    cfg = plan.config if plan else ckpt.config
    algo = plan.algorithm if plan else report.algorithm
    th = cfg.get("target_hidden_size") or cfg.get("hidden_size")
    if algo is Algorithm.EAGLE and t.hidden_size and cfg.get("hidden_size") != t.hidden_size:
        add(Finding("target-hidden", Severity.error,
                    f"EAGLE draft hidden_size {cfg.get('hidden_size')} != target hidden_size {t.hidden_size}"))
    elif algo is Algorithm.EAGLE3 and t.hidden_size and th != t.hidden_size:
        add(Finding("target-hidden", Severity.error,
                    f"draft expects target hidden size {th} but the target has {t.hidden_size}"))
    if t.vocab_size and isinstance(cfg.get("vocab_size"), int) and cfg["vocab_size"] != t.vocab_size:
        add(Finding("target-vocab", Severity.error,
                    f"draft vocab_size {cfg['vocab_size']} != target vocab_size {t.vocab_size}"))
    report.findings.extend(aux_id_findings(cfg, algo, t))
    report.findings.extend(target_capture_findings(cfg, algo, t, version=version, cuda_graph=cuda_graph))
    manifest = read_manifest(ckpt.model_dir) if ckpt.model_dir is not None else None
    report.findings.extend(unpinned_aux_findings(source_layer_count(ckpt.config, manifest), cfg,
                                                 plan.num_layers if plan else None, algo, t,
                                                 exported=manifest is not None))
    ids = aux_layer_ids_of(cfg)
    if algo is Algorithm.EAGLE3 and t.num_layers and ids:
        report.findings.extend(capture_findings(t, ids, t.num_layers))
    draft_dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    if t.dtype and isinstance(draft_dtype, str) and draft_dtype != t.dtype:
        add(Finding("target-dtype", Severity.warning,
                    f"draft dtype {draft_dtype} differs from target dtype {t.dtype}; SGLang runs both in --dtype"))
    draft_ctx = context_length(cfg)
    if t.context_length and t.context_length > draft_ctx:
        add(Finding("context-length", Severity.warning,
                    f"target context {t.context_length} > the draft's {draft_ctx} (as SGLang derives them: "
                    f"{', '.join(rules.CONTEXT_LENGTH_KEYS.value)}, the first set, times the RoPE factor): SGLang "
                    f"refuses to start unless SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1",
                    "pass --context-length, or `eaglectl serve --allow-longer-context`"))


def _spans_text(spans: list[tuple[str, str]]) -> str:
    """Release spans as text, neighbouring ones merged: `0.5.9–0.5.23`, or `0.5.9–0.5.11, 0.5.17–0.5.23`."""
    merged: list[list[str]] = []
    for first, last in spans:
        if merged and rules.RELEASES.index(first) == rules.RELEASES.index(merged[-1][1]) + 1:
            merged[-1][1] = last
        else:
            merged.append([first, last])
    return ", ".join(f"{a}–{b}" if a != b else a for a, b in merged)


def capture_findings(t: TargetInfo, ids: list[int], num_layers: int) -> list[Finding]:
    """A target family whose releases turn the same aux ids into different captured layers: the head was
    trained on one of them, so the others feed it the wrong hidden states (rules.CAPTURE_RULES; the releases in
    which the target fails with any draft are `target-capture`'s)."""
    family = aux_ids.family_of(t.model_type, t.architectures)
    seen = [(r, rules.captured_positions(r, ids, num_layers)) for r in aux_ids.rules_of(family)
            if r.failure is None]
    if len({tuple(p) for _, p in seen}) < 2:
        return []
    spans = "; ".join(f"SGLang {r.first}–{r.last} captures the inputs of layers {p}" for r, p in seen)
    return [Finding("aux-capture", Severity.warning,
                    f"on a {t.model_type} target the aux ids {ids} mean different layers per SGLang release: {spans}",
                    "serve with the release range whose capture matches how the head was trained")]


def target_findings(ckpt: Checkpoint, plan: ExportPlan | None, target: TargetInfo, *, version: str | None = None,
                    cuda_graph: bool = True) -> list[Finding]:
    """The drafter-vs-target checks alone (serve's preflight runs them without a full inspect). `version`: the SGLang
    release that will serve it (None: every known one), `cuda_graph`: whether it records CUDA graphs."""
    report = InspectReport(source=ckpt.source, layout=ckpt.layout, paths={},
                           algorithm=plan.algorithm if plan else None)
    _target_findings(ckpt, plan, target, report, version=rules.checked_release(version), cuda_graph=cuda_graph)
    return report.findings
