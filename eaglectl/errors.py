"""One exception hierarchy for every user-facing failure, each class carrying its exit code.

The CLI turns these into one line on stderr in a single place (`eaglectl.cli.app.main`); anything else is a
bug and keeps its traceback. Exit codes: 0 ok, 1 bad input or a failed check, 2 optional dependency missing or a
command-line usage error (Click's convention).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISSING_DEPENDENCY = 2
EXIT_USAGE = 2


class EaglectlError(Exception):
    """Base class: a problem the user can fix; printed as one line, no traceback."""

    exit_code = EXIT_FAILED
    hint: str | None = None
    # Printed on one line (a newline inside a name is shown as `\n`), except where the message carries a log tail.
    multiline = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class CheckpointError(EaglectlError):
    """A path that is missing, unreadable, corrupt or not a checkpoint eaglectl understands."""


class ConfigError(CheckpointError):
    """A config.json that is not JSON, not an object, or contradicts the weights."""


class UnsupportedDraftError(EaglectlError):
    """A drafter SGLang cannot serve (P-EAGLE) or an algorithm that contradicts the weights."""


class CheckFailedError(EaglectlError):
    """A verification or comparison that ran and failed (export verify, probe tolerance, smoke test)."""


class OutputError(EaglectlError):
    """The output location is not writable, is busy (locked) or the disk filled up."""


class LaunchError(EaglectlError):
    """The SGLang server could not be started, died, or never became healthy."""

    multiline = True  # SGLang's last log lines
    # The server's last log lines when the message points at the log streamed above it: the `--json` envelope
    # carries them (stdout may be all a JSON consumer keeps).
    log_tail: str | None = None


class UsageError(EaglectlError):
    """A command line that cannot mean anything: options that contradict each other, flags SGLang's parser
    refuses. Exit 2, as Click's own usage errors."""

    exit_code = EXIT_USAGE


class MissingDependencyError(EaglectlError):
    """An optional extra (sglang, transformers) is not importable."""

    exit_code = EXIT_MISSING_DEPENDENCY


def importable(module: str) -> bool:
    """Whether this interpreter can import `module`, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# The optional extras of pyproject.toml, as requirements: an install hint names the package itself, a command
# that works however eaglectl was installed (from a checkout, `pip install -e ".[sglang]"` does the same; the
# name eaglectl on the public package index is not this project).
EXTRAS = {"sglang": "sglang>=0.5.9", "hf": "transformers>=4.45"}


def install_hint(extra: str) -> str:
    return f'pip install "{EXTRAS[extra]}"'


def require(module: str, *, extra: str, purpose: str) -> None:
    """Fail with exit code 2 and an install hint when an optional module cannot be imported."""
    if not importable(module):
        raise MissingDependencyError(
            f"{module} is not installed; it is needed {purpose}.",
            hint=install_hint(extra),
        )
