"""Findings about a drafter: what SGLang would load, skip or mis-load, with the fix for each."""
