"""SGLang's rules per release (0.5.9 onwards), each with the wheel file, function and line it was read from."""
