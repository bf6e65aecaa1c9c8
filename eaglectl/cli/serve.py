"""`eaglectl serve`: launch SGLang with the drafter — preflight, exact argv, wait, smoke."""

from __future__ import annotations

import contextlib
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eaglectl import output
from eaglectl.cli.finish import EarlyWarnings, finish, for_command
from eaglectl.cli.options import (
    LAUNCH_PANEL,
    OUTPUT_PANEL,
    SERVER_PANEL,
    SPECULATION_PANEL,
    AlgorithmOpt,
    AllowLongerContextOpt,
    AttentionBackendOpt,
    AuxLayerIdsOpt,
    ContextLengthOpt,
    DisableCudaGraphOpt,
    DraftConfigOpt,
    DraftOpt,
    JsonOpt,
    MemFractionOpt,
    PythonOpt,
    RevisionOpt,
    ServedTargetOpt,
    ServeDTypeOpt,
    ServeEngineOpt,
    SkipTokenizerInitOpt,
    TpSizeOpt,
    TrustRemoteCodeOpt,
    above,
    in_range,
    passthrough_args,
)
from eaglectl.enums import ServeDType, ServeEngine
from eaglectl.errors import LaunchError
from eaglectl.output import cell, printable, safe
from eaglectl.serving.options import ServeOptions

if TYPE_CHECKING:
    from rich.console import Console


def serve_command(
    ctx: typer.Context,
    target: ServedTargetOpt,
    draft: DraftOpt,
    revision: RevisionOpt = None,
    draft_config: DraftConfigOpt = None,
    algorithm: AlgorithmOpt = None,
    aux_layer_ids: AuxLayerIdsOpt = None,
    num_steps: Annotated[int, typer.Option(
        "--num-steps", callback=in_range(1), metavar="N", rich_help_panel=SPECULATION_PANEL,
        help="Draft steps per round, SGLang's --speculative-num-steps.")] = ServeOptions.num_steps,
    topk: Annotated[int, typer.Option(
        "--topk", callback=in_range(1), metavar="K", rich_help_panel=SPECULATION_PANEL,
        help="Branches per draft step, SGLang's --speculative-eagle-topk.")] = ServeOptions.topk,
    num_draft_tokens: Annotated[int, typer.Option(
        "--num-draft-tokens", callback=in_range(1), metavar="N", rich_help_panel=SPECULATION_PANEL,
        help="Tokens verified per round, SGLang's --speculative-num-draft-tokens.")] = ServeOptions.num_draft_tokens,
    engine: ServeEngineOpt = ServeOptions.engine,
    python: PythonOpt = ServeOptions.python,
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDR", rich_help_panel=SERVER_PANEL,
        help="Bind address; 0.0.0.0 only when asked for.")] = ServeOptions.host,
    port: Annotated[int, typer.Option("--port", callback=in_range(1, 65535), metavar="PORT",
                                      rich_help_panel=SERVER_PANEL, help="HTTP port.")] = ServeOptions.port,
    tp_size: TpSizeOpt = ServeOptions.tp_size,
    dtype: ServeDTypeOpt = ServeOptions.dtype,
    attention_backend: AttentionBackendOpt = None,
    mem_fraction_static: MemFractionOpt = None,
    context_length: ContextLengthOpt = None,
    disable_cuda_graph: DisableCudaGraphOpt = ServeOptions.disable_cuda_graph,
    skip_tokenizer_init: SkipTokenizerInitOpt = ServeOptions.skip_tokenizer_init,
    trust_remote_code: TrustRemoteCodeOpt = ServeOptions.trust_remote_code,
    allow_longer_context: AllowLongerContextOpt = ServeOptions.allow_longer_context,
    wait: Annotated[bool, typer.Option(
        "--wait", rich_help_panel=LAUNCH_PANEL,
        help="Run the server as a child; wait until /health answers.")] = ServeOptions.wait,
    timeout: Annotated[float, typer.Option("--timeout", callback=above(0.0), metavar="SECONDS",
                                           rich_help_panel=LAUNCH_PANEL, help="Wait for /health.")
                       ] = ServeOptions.timeout,
    smoke: Annotated[bool, typer.Option("--smoke", rich_help_panel=LAUNCH_PANEL,
                                        help="After /health, send greedy /generate requests.")] = ServeOptions.smoke,
    smoke_only: Annotated[bool, typer.Option(
        "--smoke-only", rich_help_panel=LAUNCH_PANEL,
        help="Smoke test, then stop the server; exit 0/1.")] = ServeOptions.smoke_only,
    smoke_prompts: Annotated[Path | None, typer.Option(
        "--smoke-prompts", metavar="FILE", dir_okay=False, rich_help_panel=LAUNCH_PANEL,
        help="JSON list of strings (token-id lists with --skip-tokenizer-init).")] = None,
    smoke_max_new_tokens: Annotated[int, typer.Option(
        "--smoke-max-new-tokens", callback=in_range(1), metavar="N", rich_help_panel=LAUNCH_PANEL,
        help="Tokens per request.")] = ServeOptions.smoke_max_new_tokens,
    min_accept_length: Annotated[float | None, typer.Option(
        "--min-accept-length", callback=in_range(0.0), metavar="X", show_default=False, rich_help_panel=LAUNCH_PANEL,
        help="Fail the smoke test below this mean spec_accept_length.")] = None,
    print_only: Annotated[bool, typer.Option(
        "--print-only", rich_help_panel=OUTPUT_PANEL,
        help="Print the command; export and launch nothing (a Hub drafter is still fetched, to be checked).")
    ] = ServeOptions.print_only,
    json: JsonOpt = False,
) -> None:
    """Launch SGLang (or vLLM) with the drafter, checked first.

    Runs `python -m sglang.launch_server` (--engine vllm: `vllm serve`); arguments after `--` go to the server
    verbatim. The server replaces this process unless --wait, --smoke or --print-only; --json then prints its
    document (what was exported, the command) just before."""
    from eaglectl.serving.serve import serve

    opts = ServeOptions(
        target=target, draft=draft, engine=ServeEngine(engine), revision=revision, draft_config=draft_config,
        algorithm=algorithm,
        aux_layer_ids=aux_layer_ids,
        num_steps=num_steps, topk=topk,
        num_draft_tokens=num_draft_tokens, host=host, port=port, tp_size=tp_size, dtype=ServeDType(dtype),
        attention_backend=attention_backend, mem_fraction_static=mem_fraction_static, context_length=context_length,
        disable_cuda_graph=disable_cuda_graph, skip_tokenizer_init=skip_tokenizer_init,
        trust_remote_code=trust_remote_code,
        allow_longer_context=allow_longer_context, python=python, print_only=print_only, wait=wait, smoke=smoke,
        smoke_only=smoke_only, smoke_prompts=smoke_prompts, smoke_max_new_tokens=smoke_max_new_tokens,
        min_accept_length=min_accept_length, timeout=timeout, extra_args=passthrough_args(ctx))
    supervised = wait or smoke or smoke_only
    name = "vLLM" if opts.engine is ServeEngine.vllm else "SGLang"
    announced: list[object] = []
    early = EarlyWarnings("serve")

    def announce(prepared) -> None:  # before the server's own output (exec replaces this process: now or never)
        with contextlib.suppress(OSError):  # a full or closed stderr does not keep the server from starting
            _say_launch(prepared, early.rest(prepared.warnings))
        announced.append(prepared)
        if json and prepared.mode == "exec":  # its JSON document too: what was exported, the command execed
            output.emit("serve", prepared, as_json=True, render=lambda _c: None)

    with output.stderr.status(f"starting {name} ...", spinner="dots") if supervised else nullcontext() as st:
        result = serve(
            opts, on_launch=announce, on_warning=early,
            on_tick=(lambda s: st.update(f"waiting for {name} /health ({s:.0f} s)")) if st else None,
            on_healthy=lambda url, s: output.note(f"{name} is up at {url} after {s:.1f} s"))
    if json and result.mode == "exec" and announced:
        return  # its document went out before the exec (this is reached only where exec is mocked)
    if not announced:
        for n in result.notes:
            output.note(n)
    failure = None
    if result.exit_code:  # the server's own log said why; its exit code becomes eaglectl's
        failure = LaunchError(f"{name} exited with code {result.exit_code}")
        failure.exit_code = result.exit_code
    finish("serve", result, as_json=json, render=lambda c: _render(c, result),
           warnings=[] if announced else early.rest(result.warnings), failure=failure, say_error=False)


def _resolved(r) -> list[tuple[str, str]]:
    """What serve resolved, as (key, value) lines for stderr."""
    return [(key, str(value)) for key, value in (
        ("target", r.target), ("draft", r.draft), ("layout", r.draft_layout.value),
        ("algorithm", r.algorithm.value if r.algorithm else None), ("draft model path", r.draft_model_path),
        ("export", r.exported), ("token map", r.token_map), ("url", r.url),
        *(("env", f"{k}={v}") for k, v in r.env.items())) if value]


def _say_launch(r, warnings: list[str]) -> None:
    """On stderr, before the server starts: the notes (what was exported), the warnings, what was resolved and the
    command launched."""
    for n in r.notes:
        output.note(n)
    for w in warnings:
        output.warn(for_command(w, "serve") or w)
    for key, value in _resolved(r):
        output.note(f"{key:<17} {value}")
    output.note(f"{'launching':<17} {r.command}")


def _render(console: Console, r) -> None:
    from rich.table import Table

    if r.mode == "print-only":  # stdout: the command alone, ready for $(...) or eval; what was resolved: stderr
        console.print(printable(r.command), markup=False, highlight=False, soft_wrap=True)
        for key, value in _resolved(r):
            output.note(f"{key:<17} {value}")
        return
    algorithm = r.algorithm.value if r.algorithm else ""
    name = "vLLM" if r.engine.value == "vllm" else "SGLang"
    console.print(f"{name} at {safe(r.url)} ({algorithm}, draft {safe(r.draft_model_path)})")
    if r.smoke:
        t = Table(title="Smoke test", title_justify="left")
        for col in ("#", "tokens", "latency s", "accept length", "verify rounds"):
            t.add_column(col, justify="right")
        for i, q in enumerate(r.smoke.requests):
            t.add_row(str(i), cell(q.completion_tokens), f"{q.latency_s:.3f}", cell(q.spec_accept_length),
                      cell(q.spec_verify_ct))
        console.print(t)
        console.print(f"mean spec_accept_length: [bold]{safe(r.smoke.mean_accept_length)}[/] over "
                      f"{len(r.smoke.requests)} request(s), {r.smoke.total_tokens} tokens in {r.smoke.total_seconds} s")
