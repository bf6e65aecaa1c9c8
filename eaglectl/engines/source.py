"""Where an engine rule was read: every rule of every engine carries one, so a table row can be checked against
the released code it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    release: str
    file: str  # the path inside the released wheel
    where: str  # function, lines
    project: str = "SGLang"  # whose wheel: SGLang, vLLM, speculators

    def __str__(self) -> str:
        return f"{self.project} {self.release} {self.file}: {self.where}"


@dataclass(frozen=True)
class Rule(Generic[T]):
    value: T
    source: Source
