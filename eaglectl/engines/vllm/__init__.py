"""vLLM's rules for EAGLE-3 drafters (0.33.0), each with the wheel file, function and line it was read from."""
