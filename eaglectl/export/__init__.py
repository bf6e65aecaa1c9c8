"""Writing SGLang-ready exports: the plan, config rewrite, streaming writer, atomic output, token map."""
