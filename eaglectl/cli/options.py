"""Option and argument types shared by several commands (one place, as `Annotated` aliases)."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from eaglectl.cli import complete
from eaglectl.enums import Algorithm, ExportDType, ExportFormat, ServeDType, ServeEngine


def dtype_parser(choices: type[Enum]) -> Callable[[object], str]:
    """One dtype vocabulary: shown as torch spells it, `bf16` / `fp16` / `fp32` (any case) accepted too.

    Returns the canonical value: Typer 0.27 turns it into the enum member, 0.29 passes it on as it is, so
    commands take `ExportDType(dtype)` / `ServeDType(dtype)` (a member stays itself)."""

    def parse(value: object) -> str:
        if isinstance(value, choices):
            return str(value.value)
        try:
            return str(choices(str(value).lower()).value)
        except ValueError:
            names = ", ".join(c.value for c in choices)
            raise typer.BadParameter(f"{value!r} is not one of {names} (bf16, fp16, fp32 work too)") from None

    return parse


def size_text(value: object) -> str:
    """A size option checked while parsing (a bad one is a usage error, exit 2), passed on as typed."""
    from eaglectl.sizes import parse_size

    try:
        parse_size(str(value))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: {exc}") from None
    return str(value)


def in_range(low: float, high: float | None = None, *, low_open: bool = False) -> Callable[[Any], Any]:
    """A bounds check as a callback (a usage error, exit 2, as Click's `min=` / `max=`), for options whose help
    must fit 80 columns: Click's ranges print as `[1<=x<=65535]` beside the name and push it out of view.
    `low_open`: `low` itself is refused too (a share of 0 runs nothing)."""

    def check(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):  # nan passes every comparison
            raise typer.BadParameter(f"{value} is not a finite number")
        if value is not None and (value < low or (low_open and value == low) or (high is not None and value > high)):
            first = f"above {_num(low)}" if low_open else f"at least {_num(low)}"
            bounds = (f"between {_num(low)} and {_num(high)}" if high is not None and not low_open
                      else f"{first} and at most {_num(high)}" if high is not None else first)
            raise typer.BadParameter(f"{value} is not {bounds}")
        return value

    return check


def _num(value: float) -> str:
    """A bound as it is typed: an int in full (a seed's 2**64 - 1), a float as `%g`."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def above(low: float) -> Callable[[Any], Any]:
    """As `in_range`, for a bound the value must exceed (a duration of 0 s measures nothing): nan, infinities and
    values at or below `low` are usage errors (exit 2)."""
    return in_range(low, low_open=True)


def choices(values: type[Enum]) -> str:
    """How every choice option shows its values: first in its help, `sglang or vllm`, the option's metavar naming
    the kind (ENGINE). Not in the metavar column (Click's `[sglang|vllm]`): the dtypes' `[auto|bfloat16|float16|
    float32]` there would leave 15 of 80 columns for the help of every option in its panel."""
    names = [str(c.value) for c in values]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# Help panels: every option of every command sits in one, under the same names everywhere. Inputs (what the command
# reads) first, Output (what it writes or prints, `--json`, and `-h, --help`, which the command class puts there)
# last, the command's own panels between.
INPUTS_PANEL = "Inputs"
CONVERSION_PANEL = "Conversion"  # export
SPECULATION_PANEL = "Speculative decoding"  # serve
CONFIGS_PANEL = "Speculative configurations"  # bench
MEASUREMENT_PANEL = "Measurement"  # bench
LAUNCH_PANEL = "Launch"  # serve: wait, smoke test
COMPARISON_PANEL = "Comparison"  # probe-target
SERVER_PANEL = "Server"  # serve, bench
ENGINE_PANEL = "Engine"  # probe-target
OUTPUT_PANEL = "Output"

JsonOpt = Annotated[bool, typer.Option(
    "--json", rich_help_panel=OUTPUT_PANEL,
    help="Print one JSON document on stdout instead of tables (failures too: ok false, error).")]
CheckpointArg = Annotated[
    str,
    typer.Argument(
        metavar="PATH",
        help="Drafter checkpoint: a NeMo epoch_<E>_step_<S>/ or model/ dir, a draft_model.pt dir, a SpecForge / "
             "EAGLE dir, or a Hugging Face repo id.",
        autocompletion=complete.checkpoint_paths,
        show_default=False,
    ),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", metavar="REV", rich_help_panel=INPUTS_PANEL, show_default=False,
                 help="Branch, tag or commit of a Hub drafter (default: main)."),
]
DraftConfigOpt = Annotated[
    str | None,
    typer.Option("--draft-config", metavar="PATH", rich_help_panel=INPUTS_PANEL, show_default=False,
                 help="Config (JSON file or dir) for a SpecForge training checkpoint, which has none (default: the "
                      "one its run recorded, else config.json beside the run)."),
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", "-t", metavar="PATH_OR_ID", rich_help_panel=INPUTS_PANEL,
                 help="Target model dir (or its config.json) to check the drafter against; a Hub id is read from "
                      "the local Hugging Face cache, if there.",
                 autocompletion=complete.target_paths),
]
AlgorithmOpt = Annotated[
    Algorithm | None,
    typer.Option("--algorithm", "-a", case_sensitive=False, metavar="NAME", rich_help_panel=INPUTS_PANEL,
                 help=f"{choices(Algorithm)} (default: detected from the weights).", show_default=False,
                 autocompletion=complete.algorithms),
]
AuxLayerIdsOpt = Annotated[tuple[int, int, int] | None, typer.Option(
    "--aux-layer-ids", metavar="A B C", show_default=False, rich_help_panel=INPUTS_PANEL,
    help="Aux layer ids the EAGLE-3 head was trained with, if it records none (SGLang's numbering: 1 is layer 2's "
         "input).")]
ExportDTypeOpt = Annotated[
    ExportDType,
    typer.Option("--dtype", parser=dtype_parser(ExportDType), metavar="DTYPE", rich_help_panel=CONVERSION_PANEL,
                 help=f"Floating tensors: {choices(ExportDType)}; keep: as stored.",
                 autocompletion=complete.export_dtypes),
]
ExportFormatOpt = Annotated[
    ExportFormat,
    typer.Option("--format", case_sensitive=False, metavar="FORMAT", rich_help_panel=CONVERSION_PANEL,
                 help=f"{choices(ExportFormat)}: SGLang's layout, which vLLM reads too, or vLLM's native one, also "
                      "for P-EAGLE and norm_before_residual heads, which SGLang cannot serve.",
                 autocompletion=complete.export_formats),
]
ServeEngineOpt = Annotated[
    ServeEngine,
    typer.Option("--engine", case_sensitive=False, metavar="ENGINE", rich_help_panel=SERVER_PANEL,
                 help=f"{choices(ServeEngine)}; vllm: `vllm serve` checked against vLLM 0.33's rules.",
                 autocompletion=complete.serve_engines),
]
ServeDTypeOpt = Annotated[
    ServeDType,
    typer.Option("--dtype", parser=dtype_parser(ServeDType), metavar="DTYPE", rich_help_panel=SERVER_PANEL,
                 help=f"Model dtype: {choices(ServeDType)}; auto: the target config's.",
                 autocompletion=complete.serve_dtypes),
]
ServedTargetOpt = Annotated[  # serve and bench: the model SGLang serves
    str, typer.Option("--target", "-t", metavar="PATH_OR_ID", rich_help_panel=INPUTS_PANEL,
                      help="Target model (dir or Hub id).", autocompletion=complete.target_paths, show_default=False),
]
DraftOpt = Annotated[
    str, typer.Option("--draft", "-d", metavar="PATH_OR_ID", rich_help_panel=INPUTS_PANEL,
                      help="Drafter checkpoint (any layout inspect reads) or Hub id.",
                      autocompletion=complete.checkpoint_paths, show_default=False),
]
AttentionBackendOpt = Annotated[
    str | None, typer.Option("--attention-backend", metavar="NAME", autocompletion=complete.attention_backends,
                             rich_help_panel=SERVER_PANEL, show_default=False,
                             help="e.g. fa3 (default: SGLang's choice)."),
]
DisableCudaGraphOpt = Annotated[
    bool, typer.Option("--disable-cuda-graph", rich_help_panel=SERVER_PANEL,
                       help="Faster start, slower decode."),
]
SkipTokenizerInitOpt = Annotated[
    bool, typer.Option("--skip-tokenizer-init", rich_help_panel=SERVER_PANEL,
                       help="Token ids in and out (a target without a tokenizer)."),
]
TpSizeOpt = Annotated[int, typer.Option("--tp-size", callback=in_range(1), metavar="N", rich_help_panel=SERVER_PANEL,
                                        help="Tensor-parallel GPUs.")]
# SGLang's share of GPU memory, for serve, bench and probe-target alike: 0 leaves nothing for weights or KV cache
# (SGLang cannot run), and more than all of it does not exist.
mem_fraction = in_range(0.0, 1.0, low_open=True)
MemFractionOpt = Annotated[
    float | None, typer.Option("--mem-fraction-static", callback=mem_fraction, metavar="F", show_default=False,
                               rich_help_panel=SERVER_PANEL,
                               help="GPU memory share for weights and KV cache (default: SGLang's)."),
]
ContextLengthOpt = Annotated[
    int | None, typer.Option("--context-length", callback=in_range(1), metavar="N", show_default=False,
                             rich_help_panel=SERVER_PANEL,
                             help="Checked against the draft's (default: the target's)."),
]
TrustRemoteCodeOpt = Annotated[
    bool, typer.Option("--trust-remote-code", rich_help_panel=SERVER_PANEL,
                       help="Run the target's own modelling code."),
]
AllowLongerContextOpt = Annotated[
    bool, typer.Option("--allow-longer-context", rich_help_panel=SERVER_PANEL,
                       help="Let the target's context exceed the draft's max_position_embeddings (sets SGLang's "
                            "override variable)."),
]
PythonOpt = Annotated[
    str, typer.Option("--python", metavar="EXE", rich_help_panel=SERVER_PANEL, help="Interpreter that runs the server.",
                      show_default="this Python"),
]


def passthrough_args(ctx: typer.Context) -> list[str]:
    """The arguments after `--`, SGLang's. Click also collects stray words typed before `--` into `ctx.args`
    (`--aux-layer-ids 1 3 4 5`): those are a usage error, as an unknown option is, not flags for SGLang."""
    from eaglectl.errors import UsageError

    typed = getattr(ctx.find_root().command, "argv", None)
    args = list(ctx.args)
    if not isinstance(typed, list):
        return args
    after = typed[typed.index("--") + 1:] if "--" in typed else []
    stray = args[:len(args) - len(after)] if args[len(args) - len(after):] == after else args
    if stray:
        raise UsageError(f"unexpected argument {stray[0]!r} (SGLang's own arguments go after `--`: "
                         f"eaglectl {ctx.info_name} ... -- ...)")
    return args
