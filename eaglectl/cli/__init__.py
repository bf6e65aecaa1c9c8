"""Typer front end: one thin module per command, the app and error mapping in `app`."""
