"""Serving orchestration: the installed SGLang release of an interpreter, its own flag parser, the launch argv,
the server process (start, health, supervise, smoke, stop)."""
