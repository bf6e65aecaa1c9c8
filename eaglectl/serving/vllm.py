"""`serve --engine vllm`: the drafter exported in the form vLLM reads (SGLang's layout with vLLM's keys, or the
speculators layout for heads SGLang cannot serve), preflighted against vLLM's rules (`eaglectl.engines.vllm`), and
`vllm serve TARGET --speculative-config '{"method": "eagle3", ...}'`: printed, or exec'd as
`PYTHON -m vllm.entrypoints.cli.main serve ...` when that interpreter has vLLM."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eaglectl.engines.vllm import rules
from eaglectl.enums import ExportFormat, Severity
from eaglectl.errors import CheckpointError, MissingDependencyError, UnsupportedDraftError, UsageError
from eaglectl.serving.options import ServeOptions
from eaglectl.serving.passthrough import OverrideError, refuse_overrides

INSTALL_HINT = f'pip install "vllm=={rules.RELEASE}" (the release whose rules eaglectl checks drafters against)'
# vLLM flags serve sets from what it checked (`vllm serve TARGET` takes the model positionally)
OWNED = {"--speculative-config": "--draft / --num-steps", "--model": "--target"}


@dataclass
class InstalledVllm:
    python: str
    version: str | None


@dataclass
class VllmLaunch:
    """What `prepare` resolved for a vLLM launch (serve.py makes its ServeResult of it)."""

    argv: list[str]
    draft_layout: Any
    draft_model_path: str
    algorithm: Any
    exported: str | None
    parallel_drafting: bool
    notes: list[str]
    warnings: list[str]
    version: str | None  # the installed vLLM (None with --print-only)


def installed_vllm(python: str) -> InstalledVllm:
    """Ask `python` for its vLLM release (package metadata, never an import); exit 2 with the install hint when it
    has none."""
    from eaglectl.serving.installed import _run_probe, is_this_interpreter, probe

    found = probe("vllm") if is_this_interpreter(python) else _run_probe(python, "vllm")
    if not found.get("installed"):
        raise MissingDependencyError(f"vLLM is not importable by {python}; eaglectl launches "
                                     f"`{python} -m {rules.CLI_MODULE.value} serve`", hint=INSTALL_HINT)
    version = found.get("version")
    return InstalledVllm(python, version if isinstance(version, str) and version else None)


def export_format(ckpt) -> ExportFormat:
    """The export vLLM is handed: SGLang's layout (with vLLM's keys: one directory for both engines), except for
    the heads SGLang's export refuses and the speculators layout carries (P-EAGLE, norm_before_residual)."""
    from eaglectl.checkpoint.resolve import is_p_eagle
    from eaglectl.jsonfile import as_object

    cfg = ckpt.config
    nbr = as_object(cfg.get("eagle_config")).get("norm_before_residual", cfg.get("norm_before_residual"))
    return ExportFormat.speculators if is_p_eagle(ckpt) or nbr is True else ExportFormat.sglang


def check_options(opts: ServeOptions) -> None:
    """What vLLM cannot do as asked, refused before anything is read or written."""
    if opts.topk != 1:
        raise UsageError(f"--topk {opts.topk}: vLLM drafts one chain of --num-steps tokens (topk 1; "
                         f"{rules.CHAIN_ONLY.source})", hint="drop --topk")
    if opts.smoke or opts.smoke_only:
        raise UsageError("--smoke reads SGLang's /generate answers: with --engine vllm use --wait and query vLLM's "
                         "OpenAI-compatible API yourself")
    refuse_overrides(opts.extra_args, OWNED, engine="vLLM")
    for arg in opts.extra_args:
        if arg == "--":
            break
        if arg == "-sc" or arg.startswith("-sc="):  # --speculative-config's short form (arg_utils.py l.1866)
            raise OverrideError(f"`-- {arg}` would override --speculative-config, which eaglectl serve sets itself; "
                                f"vLLM takes the last occurrence",
                                hint=f"use eaglectl serve {OWNED['--speculative-config']} instead")


def speculative_config(draft_path: str, opts: ServeOptions, *, parallel_drafting: bool) -> str:
    """`--speculative-config`'s JSON: the method always named (vLLM guesses it from the path otherwise)."""
    from eaglectl.engines.vllm.loader import speculative_config as spec

    return json.dumps(spec(draft_path, num_speculative_tokens=opts.num_steps, parallel_drafting=parallel_drafting))


def model_path(target: str) -> str:
    """The target as vLLM is given it: an existing local path absolute, a Hub id as typed."""
    p = os.path.expanduser(target)
    return os.path.abspath(p) if os.path.exists(p) else target


def build_argv(opts: ServeOptions, *, draft_path: str, parallel_drafting: bool, print_only: bool) -> list[str]:
    """vLLM's command line: `vllm serve ...` to print, `PYTHON -m vllm.entrypoints.cli.main serve ...` to run."""
    head = ["vllm"] if print_only else [opts.python, "-m", rules.CLI_MODULE.value]
    flags = rules.LAUNCH_FLAGS.value
    argv = [*head, "serve", model_path(opts.target),
            flags["speculative_config"], speculative_config(draft_path, opts, parallel_drafting=parallel_drafting),
            flags["host"], opts.host, flags["port"], str(opts.port), flags["dtype"], opts.dtype.value]
    if opts.tp_size != 1:
        argv += [flags["tp_size"], str(opts.tp_size)]
    for key, value in (("context_length", opts.context_length), ("mem_fraction_static", opts.mem_fraction_static),
                       ("attention_backend", opts.attention_backend)):
        if value is not None:
            argv += [flags[key], str(value)]
    for key, on in (("disable_cuda_graph", opts.disable_cuda_graph), ("skip_tokenizer_init", opts.skip_tokenizer_init),
                    ("trust_remote_code", opts.trust_remote_code)):
        if on:
            argv.append(flags[key])
    return argv + list(opts.extra_args)


def prepare(opts: ServeOptions, *, on_warning: Callable[[str], None] | None = None) -> VllmLaunch:
    """Everything before launching vLLM: resolve, export (unless print-only), preflight, argv. `on_warning`: as
    for SGLang's (`eaglectl.serving.serve.prepare`)."""
    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.checkpoint.target import load_target
    from eaglectl.engines.vllm.loader import simulate_load
    from eaglectl.export.atomic import output_path
    from eaglectl.export.exporter import default_output, export_plan, layout_name, up_to_date, vllm_ready_as_is
    from eaglectl.export.plan import build_plan
    from eaglectl.export.servable import require_vllm_servable

    check_options(opts)
    notes: list[str] = []
    warnings: list[str] = []
    installed = None if opts.print_only else installed_vllm(opts.python)  # exit 2 before anything is written
    if installed is not None and installed.version not in (None, rules.RELEASE):
        warnings.append(f"vLLM {installed.version} is installed for {opts.python}; eaglectl checked the drafter "
                        f"against vLLM {rules.RELEASE}'s rules")
    target = load_target(opts.target)
    ckpt = resolve(opts.draft, revision=opts.revision, draft_config=opts.draft_config)
    fmt = export_format(ckpt)
    plan = build_plan(ckpt, algorithm=opts.algorithm, fmt=fmt,
                      aux_layer_ids=list(opts.aux_layer_ids) if opts.aux_layer_ids is not None else None,
                      verifier=model_path(opts.target) if fmt is ExportFormat.speculators else None)
    if plan.algorithm.value != "EAGLE3":
        raise UnsupportedDraftError(f"{ckpt.source}: an {plan.algorithm.value} head; eaglectl serves EAGLE-3 heads "
                                    f"with vLLM", hint="serve it with SGLang (drop --engine vllm)")
    require_vllm_servable(ckpt, plan)
    sim = simulate_load(plan.config, plan.shapes, target_vocab=target.vocab_size if target.local else None,
                        target_layers=target.num_layers if target.local else None)
    if target.local:
        _preflight(ckpt, plan, target, sim)
    elif target.note:
        notes.append(target.note)
    if sim.trained is None:
        warnings.append(f"the drafter records no aux ids: vLLM captures the target's default layers "
                        f"{rules.CAPTURE_DEFAULT.value}; --aux-layer-ids pins the ones it was trained with")
    if fmt is ExportFormat.sglang and vllm_ready_as_is(ckpt, plan):
        out, exported = ckpt.model_dir, None
    else:
        out = output_path(default_output(ckpt, plan, force=True))
        if opts.print_only:
            exported = "unchanged" if up_to_date(ckpt, plan, out) else "would export"
            notes.append(f"print-only: nothing written; {out} " + (
                "already holds this drafter's export (up to date)" if exported == "unchanged"
                else "does not hold it yet: a real launch exports the drafter there first"))
        else:
            report = export_plan(ckpt, plan, output=out, on_warning=on_warning)
            warnings.extend(report.warnings)
            exported = report.action
            notes.extend(report.notes)
    if fmt is ExportFormat.speculators:
        kind = "P-EAGLE" if sim.parallel_drafting else "norm_before_residual"
        notes.append(f"exported in the speculators layout (a {kind} head, which SGLang cannot serve)")
    if opts.allow_longer_context:
        notes.append(f"--allow-longer-context: vLLM raises the draft's context to the target's itself "
                     f"({rules.LONGER_CONTEXT.source})")
    assert out is not None
    argv = build_argv(opts, draft_path=str(out), parallel_drafting=sim.parallel_drafting, print_only=opts.print_only)
    return VllmLaunch(argv, layout_name(ckpt, plan), str(out), plan.algorithm, exported, sim.parallel_drafting,
                      notes, warnings, installed.version if installed else None)


def _preflight(ckpt: Any, plan: Any, target: Any, sim: Any) -> None:
    """The head against the target, as vLLM will run it: sizes, and the layers captured against those trained."""
    from eaglectl.inspection.report import target_findings

    errors = [f for f in target_findings(ckpt, plan if plan.format is ExportFormat.sglang else None, target)
              if f.severity is Severity.error and f.code in ("target-hidden", "target-vocab")]
    if errors:
        raise UnsupportedDraftError(f"preflight: {errors[0].message}", hint=errors[0].fix)
    problems = [*sim.errors, *(f"leaves {p} uninitialised" for p in sim.uninitialized), *sim.warnings]
    if problems:
        raise CheckpointError(f"preflight: vLLM {sim.release} on this target: {problems[0]}")
