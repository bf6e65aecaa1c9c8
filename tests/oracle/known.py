"""Disagreements the oracle found between SGLang's code and eaglectl's replay that are not fixed yet.

(head, subject) -> why, the subject as `compare.Disagreement.subject` names it. Seen on every release the oracle
ran (0.5.9, 0.5.10, 0.5.12, 0.5.15, 0.5.17, 0.5.23 on CPU). tests/test_oracle_sglang.py xfails such a head with both
sides' words, and fails once the disagreement no longer shows, so that the entry goes when the replay is fixed;
the driver marks them "known" in its table and does not count them in its exit status.
"""

from __future__ import annotations

KNOWN: dict[tuple[str, str], str] = {}
