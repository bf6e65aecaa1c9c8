"""Sizes as users type them (`5GB`, `500MB`, `1.5 GB`, bytes): decimal units, as huggingface_hub's
`max_shard_size` and the sizes `export` prints."""

from __future__ import annotations

import re

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SIZE = re.compile(r"(\d{1,18}(?:\.\d{1,9})?)\s*([KMGT]?B)?", re.IGNORECASE)  # bounded: no float overflow


def parse_size(text: str) -> int:
    """Bytes in `text`; ValueError (with the expected form) for anything else, zero included."""
    found = _SIZE.fullmatch(str(text).strip())
    if found is None:
        raise ValueError("expected a size like 5GB, 500MB or bytes")
    size = int(float(found.group(1)) * UNITS[(found.group(2) or "").upper()])
    if size <= 0:
        raise ValueError("must be positive")
    return size
