"""Sizes as users type them: eaglectl's own parser (no private huggingface_hub helper)."""

from __future__ import annotations

import pytest

from eaglectl.sizes import parse_size


@pytest.mark.parametrize(("text", "size"), [
    ("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("60kb", 60_000), ("1.5 GB", 1_500_000_000), ("123", 123),
    ("7B", 7), (" 2TB ", 2 * 10**12),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["5XB", "", "GB", "-5GB", "0", "0.0000001KB", "nan", "infGB", "9" * 40, "5 G B"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)
