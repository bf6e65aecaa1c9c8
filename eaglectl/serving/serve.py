"""`serve`: resolve (and export) the drafter, preflight it against the target, build SGLang's exact argv,
then exec SGLang, or supervise it until healthy and smoke-test it."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.checkpoint.resolve import resolve
from eaglectl.engines.sglang import rules
from eaglectl.enums import Algorithm, Layout, ServeEngine, Severity
from eaglectl.errors import CheckFailedError, ConfigError, UnsupportedDraftError
from eaglectl.hub import expand_user
from eaglectl.serving import flags, launcher
from eaglectl.serving.options import ServeOptions
from eaglectl.serving.passthrough import SERVE_OWNED, refuse_overrides

LONG_CONTEXT_ENV = "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN"


@dataclass
class SmokeRequest:
    prompt: Any
    output_ids: list[int] | None
    text: str | None
    latency_s: float
    completion_tokens: int | None
    spec_accept_length: float | None
    spec_verify_ct: int | None


@dataclass
class SmokeResult:
    requests: list[SmokeRequest]
    mean_accept_length: float | None
    total_tokens: int
    total_seconds: float


@dataclass
class ServeResult:
    argv: list[str]
    command: str
    env: dict[str, str]
    target: str
    draft: str
    draft_layout: Layout
    draft_model_path: str
    token_map: str | None
    algorithm: Algorithm | None
    exported: str | None  # "written" | "unchanged" | "would export" | None
    url: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the CLI prints them on stderr; never a failure
    mode: str = "exec"
    startup_seconds: float | None = None
    smoke: SmokeResult | None = None
    exit_code: int | None = None
    sglang_version: str | None = None  # what --python has installed (None with --print-only)
    spelt_for: str | None = None  # the release whose flag spellings the argv uses (None: what every release takes)
    sglang_rules: str | None = None  # the known release range whose loader rules it was checked with
    engine: ServeEngine = ServeEngine.sglang
    vllm_version: str | None = None  # --engine vllm: what --python has installed (None with --print-only)
    vllm_rules: str | None = None  # --engine vllm: the vLLM release whose rules the drafter was checked with


def prepare(opts: ServeOptions, *, on_warning: Callable[[str], None] | None = None) -> ServeResult:
    """Everything before the launch: resolve, preflight, export (unless print-only), argv. `on_warning` gets the
    export's warning about what it will replace before it does (it is in `warnings` too)."""
    if opts.engine is ServeEngine.vllm:
        return _prepare_vllm(opts, on_warning=on_warning)
    from eaglectl.checkpoint.peagle import reject_p_eagle
    from eaglectl.checkpoint.target import load_target
    from eaglectl.export.atomic import output_path
    from eaglectl.export.exporter import (
        TOKEN_MAP,
        default_output,
        export_plan,
        head_warnings,
        layout_name,
        refuse_unsafe_output,
        servable_as_is,
        up_to_date,
    )
    from eaglectl.export.outputs import earlier_export_notes, unpin_warning
    from eaglectl.export.plan import build_plan
    from eaglectl.export.servable import require_servable
    from eaglectl.serving.installed import installed_sglang, require_release

    notes: list[str] = []
    warnings: list[str] = []
    refuse_overrides(opts.extra_args, owned_flags(opts))
    local = _local_version(opts.python)  # --python's SGLang, from its metadata on disk; None if unknown
    if opts.extra_args or opts.attention_backend is not None:  # typed by SGLang itself, before any export
        check_flags(opts, local)
    installed = None if opts.print_only else installed_sglang(opts.python)  # exit 2 before anything is written
    spelt_for = installed.version if installed else local
    if opts.print_only and local is None and opts.disable_cuda_graph:
        warnings.append(f"could not read the SGLang release of {opts.python} from its metadata: --disable-cuda-graph "
                        f"is written as every known release accepts it (SGLang >= 0.5.14 warns that it is "
                        f"deprecated)")
    num_draft_tokens = opts.num_draft_tokens
    if opts.topk == 1 and num_draft_tokens != opts.num_steps + 1:
        num_draft_tokens = opts.num_steps + 1
        notes.append(f"topk 1 needs num-draft-tokens = num-steps + 1: using {num_draft_tokens} "
                     f"(SGLang would force the same)")
    if opts.port + 10000 > 65535 and "SGLANG_GRPC_PORT" not in os.environ:
        notes.append(f"port {opts.port}: SGLang >= 0.5.15 derives its gRPC port as port + 10000 and refuses to start "
                     f"above 65535; use a port below 55536 or set SGLANG_GRPC_PORT")
    env: dict[str, str] = {}
    target = load_target(opts.target)  # first: a mistyped target fails before a Hub drafter is downloaded
    # a Hub id: fetched into the Hub cache, then as any dir
    ckpt = resolve(opts.draft, revision=opts.revision, draft_config=opts.draft_config)
    algorithm = opts.algorithm
    token_map: str | None = None
    exported: str | None = None
    check = None
    if ckpt.hub is not None:
        notes.append(f"draft {ckpt.hub.repo_id}: commit {ckpt.hub.commit}, from the Hugging Face cache "
                     f"{ckpt.hub.snapshot}")
    reject_p_eagle(ckpt, opts.target)
    plan = build_plan(ckpt, algorithm=algorithm,
                      aux_layer_ids=list(opts.aux_layer_ids) if opts.aux_layer_ids is not None else None)
    graphs_off = opts.disable_cuda_graph or bool(rules.no_cuda_graph_flags() & set(opts.extra_args))
    if installed is not None:  # first: a refusal names the release the drafter needs; nothing is written yet
        assert ckpt.weights is not None
        check = require_release(opts.python, plan.config, plan.shapes, plan.algorithm, list(ckpt.weights.tensors),
                                installed=installed, cuda_graph=not graphs_off)
    require_servable(ckpt, plan)  # --print-only must refuse what a real launch (its export) would refuse
    algorithm = plan.algorithm
    layout = layout_name(ckpt, plan)  # as inspect names it
    if servable_as_is(ckpt, plan):  # launched as it is: what an export of it would warn of, said here
        out = ckpt.model_dir
        exported = None
        notes.extend(earlier_export_notes(ckpt))
        warnings.extend(head_warnings(ckpt, plan))
    elif opts.print_only:
        out = output_path(default_output(ckpt, plan))
        notes.extend(earlier_export_notes(ckpt))
        refuse_unsafe_output(ckpt, out)  # what a real launch's export would refuse, refused here too
        if up_to_date(ckpt, plan, out):
            exported = "unchanged"
            notes.append(f"print-only: nothing written; {out} already holds this drafter's export (up to date)")
        else:
            exported = "would export"
            warnings.extend(head_warnings(ckpt, plan))  # what the launch's export would warn of
            state = "holds an export of other settings" if out.exists() else "does not exist yet"
            if (unpinned := unpin_warning(out, plan.config)) is not None:
                warnings.append(unpinned)
            notes.append(f"print-only: nothing written; the draft path {out} {state}: a real launch exports the "
                         f"drafter there first")
    else:
        report = export_plan(ckpt, plan, on_warning=on_warning)
        warnings.extend(report.warnings)
        out, exported = report.output, report.action
        notes.extend(report.notes)
        if exported == "written":
            notes.append(f"exported the drafter to {out}")
    assert out is not None
    draft_path = str(out)
    if algorithm is Algorithm.EAGLE and plan.selected_ids is not None:
        token_map = str(Path(out) / TOKEN_MAP)
    elif algorithm is Algorithm.EAGLE3:
        notes.append("--speculative-token-map not passed: SGLang ignores it for EAGLE3 and reads d2t from the "
                     "draft weights")
    if not target.local:
        notes.append(target.note or f"target {opts.target} is not local: preflight against the target skipped")
    else:
        if target.note:
            notes.append(target.note)
        _preflight(ckpt, plan, target, opts, env, notes, warnings, version=spelt_for, cuda_graph=not graphs_off)
    warnings.extend(check.warnings if check else [])
    argv = build_argv(opts, algorithm=algorithm, draft_path=draft_path, token_map=token_map,
                      num_draft_tokens=num_draft_tokens, sglang_version=spelt_for)
    return ServeResult(
        argv=argv, command=shell_command(argv, env), env=env, target=opts.target, draft=opts.draft, draft_layout=layout,
        draft_model_path=draft_path, token_map=token_map, algorithm=algorithm, exported=exported,
        url=f"http://{_url_host(opts.host)}:{opts.port}", notes=notes, warnings=warnings,
        mode="print-only" if opts.print_only else ("smoke-only" if opts.smoke_only else
                                                   ("wait" if opts.wait or opts.smoke else "exec")),
        sglang_version=check.version if check else None, sglang_rules=check.rules if check else None,
        spelt_for=spelt_for)


def _prepare_vllm(opts: ServeOptions, *, on_warning: Callable[[str], None] | None) -> ServeResult:
    from eaglectl.engines.vllm.rules import RELEASE
    from eaglectl.serving import vllm

    launch = vllm.prepare(opts, on_warning=on_warning)
    return ServeResult(
        argv=launch.argv, command=shell_command(launch.argv, {}), env={}, target=opts.target, draft=opts.draft,
        draft_layout=launch.draft_layout, draft_model_path=launch.draft_model_path, token_map=None,
        algorithm=launch.algorithm, exported=launch.exported, url=f"http://{_url_host(opts.host)}:{opts.port}",
        notes=launch.notes, warnings=launch.warnings,
        mode="print-only" if opts.print_only else ("wait" if opts.wait else "exec"), engine=ServeEngine.vllm,
        vllm_version=launch.version, vllm_rules=RELEASE)


def _local_version(python: str) -> str | None:
    """The SGLang release `python` has, read from its metadata without importing SGLang or starting a process (so
    `--print-only` stays free of both): flags are then spelt as that release spells them. None: unknown."""
    from eaglectl.serving.installed import release_on_disk

    return release_on_disk(python)


def owned_flags(opts: ServeOptions) -> dict[str, str]:
    """SGLang flag -> eaglectl option, for the flags that decide what is served (`build_argv` writes them), and
    the SGLang flags of serve's own options that were given: given twice, SGLang would silently take the last."""
    owned = dict(SERVE_OWNED)
    for flag, given in (("--context-length", opts.context_length is not None),  # checked in preflight
                        ("--attention-backend", opts.attention_backend is not None),
                        ("--mem-fraction-static", opts.mem_fraction_static is not None),
                        ("--skip-tokenizer-init", opts.skip_tokenizer_init),
                        ("--trust-remote-code", opts.trust_remote_code)):
        if given:
            owned[flag] = flag
    if opts.disable_cuda_graph:  # any release's spelling, and the backends it sets
        owned.update(dict.fromkeys(sorted(rules.no_cuda_graph_flags()), "--disable-cuda-graph"))
    return owned


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)


def _preflight(ckpt, plan, target, opts: ServeOptions, env: dict[str, str], notes: list[str],
               warnings: list[str], *, version: str | None, cuda_graph: bool) -> None:
    """The drafter against the target, as `version` (None: unknown, every known release) will serve it."""
    from eaglectl.inspection.report import target_findings

    findings = target_findings(ckpt, plan, target, version=version, cuda_graph=cuda_graph)
    errors = [f for f in findings if f.severity is Severity.error]
    if errors:
        raise UnsupportedDraftError(f"preflight: {errors[0].message}" +
                                    (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                                    hint=errors[0].fix)
    for f in findings:
        served = f.code == "target-capture" and version is not None  # the release that will run it is affected
        if f.severity is Severity.warning and (f.code == "aux-ids-unpinned" or served):  # a warning, with the fix
            warnings.append(f"{f.message}; {f.fix}")
        elif f.severity is Severity.warning and f.code != "context-length":
            notes.append(f"preflight: {f.message}")
    warnings.extend(rules.draft_inherited_flags(opts.extra_args))
    from eaglectl.engines.sglang.loader import context_length

    draft_mpe = context_length(plan.config)  # as SGLang derives it: a stale seq_length wins
    ctx = opts.context_length or target.context_length
    if ctx and ctx > draft_mpe:
        if not opts.allow_longer_context:
            raise ConfigError(
                f"preflight: context length {ctx} exceeds the draft's context length {draft_mpe}; "
                f"SGLang refuses to start", hint=f"pass --context-length {draft_mpe}, or --allow-longer-context "
                f"to set {LONG_CONTEXT_ENV}=1 for SGLang")
        env[LONG_CONTEXT_ENV] = "1"
        warnings.append(f"context length {ctx} > the draft's context length {draft_mpe}: setting "
                        f"{LONG_CONTEXT_ENV}=1 (the draft runs past the positions it was trained on)")


def shell_command(argv: list[str], env: dict[str, str]) -> str:
    """One shell-ready line: `env K=V` first when SGLang needs variables (an assignment prefix would not survive
    `$(eaglectl serve ... --print-only)`), then the argv, quoted."""
    from eaglectl.output import shell_join  # `$'...'` for a path with control characters or non-UTF-8 bytes

    return shell_join([*(["env", *(f"{k}={v}" for k, v in env.items())] if env else []), *argv])


def model_path(target: str) -> str:
    """`--model-path`: an existing local target as an absolute path (the draft paths are absolute too, and the
    command may run from another directory); a Hub id as given."""
    p = expand_user(target)
    return os.path.abspath(p) if p.exists() else target


def build_argv(opts: ServeOptions, *, algorithm: Algorithm | None, draft_path: str | None, token_map: str | None,
               num_draft_tokens: int, sglang_version: str | None = None) -> list[str]:
    """SGLang's argv. `algorithm` None: the target alone with the same flags (bench's baseline). Flags whose
    spelling changed between releases are written as `sglang_version` spells them (None: as every release
    accepts them)."""
    argv = [opts.python, "-m", "sglang.launch_server", "--model-path", model_path(opts.target)]
    if algorithm is not None:
        assert draft_path is not None
        argv += ["--speculative-algorithm", algorithm.value, "--speculative-draft-model-path", draft_path]
        if token_map:
            argv += ["--speculative-token-map", token_map]
        argv += ["--speculative-num-steps", str(opts.num_steps), "--speculative-eagle-topk", str(opts.topk),
                 "--speculative-num-draft-tokens", str(num_draft_tokens)]
    argv += ["--host", opts.host, "--port", str(opts.port), "--dtype", opts.dtype.value]
    if opts.tp_size != 1:
        argv += ["--tp-size", str(opts.tp_size)]
    argv += same_named_flags(opts)
    if opts.disable_cuda_graph:
        argv += rules.launch_flags(sglang_version).no_cuda_graph.value
    if opts.skip_tokenizer_init:
        argv.append("--skip-tokenizer-init")
    if opts.trust_remote_code:
        argv.append("--trust-remote-code")
    return argv + list(opts.extra_args)


def same_named_flags(opts: ServeOptions) -> list[str]:
    """The options serve names as SGLang names them, with their values: for SGLang's argv and for an `eaglectl
    serve` command line alike (bench's recommendation)."""
    argv: list[str] = []
    for flag, value in (("--attention-backend", opts.attention_backend),
                        ("--mem-fraction-static", opts.mem_fraction_static),
                        ("--context-length", opts.context_length)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def argv_for(opts: ServeOptions, prepared: ServeResult, speculative: tuple[int, int, int] | None) -> list[str]:
    """The argv of one more launch of what `prepare` resolved: another (steps, topk, draft tokens), or None for
    the target without speculation. Same drafter path, token map and flags; `opts` may change host / port."""
    if speculative is None:
        return build_argv(opts, algorithm=None, draft_path=None, token_map=None, num_draft_tokens=0,
                          sglang_version=prepared.spelt_for)
    steps, topk, draft_tokens = speculative
    assert prepared.algorithm is not None
    return build_argv(dataclasses.replace(opts, num_steps=steps, topk=topk), algorithm=prepared.algorithm,
                      draft_path=prepared.draft_model_path, token_map=prepared.token_map,
                      num_draft_tokens=draft_tokens,
                      sglang_version=prepared.spelt_for)


def check_flags(opts: ServeOptions, spelt_for: str | None) -> None:
    """Read SGLang's whole argv with SGLang's own parser, as launch_server will, when `opts.python` is this
    interpreter and can import SGLang: a flag it refuses is a usage error before anything is exported or started.
    The argv is spelt as that SGLang (`spelt_for`) spells it: a deprecated spelling would make its parser print a
    warning. Another interpreter's SGLang checks the flags when it starts."""
    cls = flags.server_args_class(opts.python)
    if cls is None:
        return
    argv = build_argv(opts, algorithm=opts.algorithm or Algorithm.EAGLE3, draft_path=opts.draft, token_map=None,
                      num_draft_tokens=opts.num_draft_tokens, sglang_version=spelt_for)
    flags.parse_flags(argv[3:], cls, allow_abbrev=True)


def serve(opts: ServeOptions, *, on_tick: Callable[[float], None] | None = None,
          on_healthy: Callable[[str, float], None] | None = None,
          on_launch: Callable[[ServeResult], None] | None = None,
          on_warning: Callable[[str], None] | None = None) -> ServeResult:
    """Prepare, then launch in the requested mode. In exec mode this call does not return. `on_launch` gets the
    prepared result just before the server starts: what it says comes before the server's own output (in exec
    mode, it is the last eaglectl says)."""
    result = prepare(opts, on_warning=on_warning)
    if opts.print_only:
        return result
    if on_launch is not None:
        on_launch(result)
    env = {**os.environ, **result.env}
    if result.mode == "exec":
        launcher.exec_server(result.argv, env)
        return result  # only reached when exec is mocked
    server = launcher.ServerProcess(result.argv, env)
    server.start()
    try:
        result.startup_seconds = server.wait_healthy(result.url, timeout=opts.timeout, on_tick=on_tick)
        if on_healthy:
            on_healthy(result.url, result.startup_seconds)
        if opts.smoke or opts.smoke_only:
            result.smoke = smoke_test(result.url, load_prompts(opts), opts.smoke_max_new_tokens)
            if opts.min_accept_length is not None:
                mean = result.smoke.mean_accept_length
                if mean is None or mean < opts.min_accept_length:
                    raise CheckFailedError(f"smoke: mean spec_accept_length {mean} < {opts.min_accept_length}")
        if opts.smoke_only:
            result.exit_code = 0
            return result
        result.exit_code = server.wait()
        return result
    finally:
        server.stop()


DEFAULT_TEXT_PROMPT = "The capital of France is"


def load_prompts(opts: ServeOptions) -> list[Any]:
    """Smoke prompts: a JSON list of strings or token-id lists; by default one prompt (ids when SGLang
    runs without a tokenizer)."""
    if opts.smoke_prompts is not None:
        import stat

        from eaglectl.errors import CheckpointError
        from eaglectl.jsonfile import CONFIG_LIMITS, loads_bounded

        path = Path(opts.smoke_prompts)
        try:  # a regular file within the config limits: a FIFO or a huge file is refused before it is read
            st = path.stat()
            if not stat.S_ISREG(st.st_mode) or st.st_size > CONFIG_LIMITS.max_bytes:
                raise CheckpointError(f"{path}: not a regular file of at most {CONFIG_LIMITS.max_bytes} bytes")
            raw = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{path}: not a readable JSON list of prompts ({exc.strerror or exc})") from exc
        prompts = loads_bounded(raw, CONFIG_LIMITS, where=str(path), what="prompt file")
        if not isinstance(prompts, list) or not prompts or not all(
                isinstance(p, str) or (isinstance(p, list) and p and all(isinstance(i, int) for i in p))
                for p in prompts):
            raise CheckpointError(f"{opts.smoke_prompts}: expected a JSON list of strings or token-id lists")
        return prompts
    if opts.skip_tokenizer_init or "--skip-tokenizer-init" in opts.extra_args:
        return [list(range(3, 19))]
    return [DEFAULT_TEXT_PROMPT]


def smoke_test(base_url: str, prompts: list[Any], max_new_tokens: int) -> SmokeResult:
    """Greedy /generate per prompt; report latency, tokens and SGLang's spec_accept_length."""
    requests = []
    start = time.monotonic()
    for prompt in prompts:
        payload: dict[str, Any] = {"sampling_params": {"temperature": 0, "max_new_tokens": max_new_tokens}}
        payload["text" if isinstance(prompt, str) else "input_ids"] = prompt
        t0 = time.monotonic()
        resp = launcher.post_json(f"{base_url}/generate", payload)
        latency = time.monotonic() - t0
        meta = resp.get("meta_info", {}) if isinstance(resp, dict) else {}
        requests.append(SmokeRequest(
            prompt=prompt, output_ids=resp.get("output_ids"), text=resp.get("text"), latency_s=round(latency, 4),
            completion_tokens=meta.get("completion_tokens"), spec_accept_length=meta.get("spec_accept_length"),
            spec_verify_ct=meta.get("spec_verify_ct")))
    accepts = [r.spec_accept_length for r in requests if isinstance(r.spec_accept_length, (int, float))]
    return SmokeResult(requests=requests, mean_accept_length=round(sum(accepts) / len(accepts), 4) if accepts else None,
                       total_tokens=sum(r.completion_tokens or 0 for r in requests),
                       total_seconds=round(time.monotonic() - start, 3))
