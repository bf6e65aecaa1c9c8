"""eaglectl: EAGLE / EAGLE-3 drafters from a training checkpoint to a running SGLang server."""

__version__ = "0.1.0"
