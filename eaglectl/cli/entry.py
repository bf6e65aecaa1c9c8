"""The `eaglectl` console script and `python -m eaglectl`: signals held back from the first line
(`eaglectl.cli.signals`), then the CLI imported and run."""

from eaglectl.cli import signals


def main() -> None:
    signals.hold()
    from eaglectl.cli.app import main as run

    run()
