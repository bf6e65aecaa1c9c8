"""One finding: what `inspect` reports, and what export / serve refuse on."""

from __future__ import annotations

from dataclasses import dataclass

from eaglectl.enums import Severity


@dataclass
class Finding:
    code: str
    severity: Severity
    message: str
    fix: str | None = None
