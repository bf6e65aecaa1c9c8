"""Option and argument types shared by several commands (one place, as `Annotated` aliases)."""

from __future__ import annotations

from typing import Annotated

import typer

from eaglectl.cli import complete
from eaglectl.enums import Algorithm

JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print one JSON document on stdout instead of tables (on failure too: ok false, error).")]
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
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", "-t", metavar="PATH_OR_ID",
                 help="Target model directory (or its config.json) to check the drafter against.",
                 autocompletion=complete.target_paths),
]
AlgorithmOpt = Annotated[
    Algorithm | None,
    typer.Option("--algorithm", "-a", case_sensitive=False,
                 help="EAGLE3 or EAGLE; detected from the weights when omitted.",
                 autocompletion=complete.algorithms),
]
