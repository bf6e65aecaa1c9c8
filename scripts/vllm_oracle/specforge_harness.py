#!/usr/bin/env python3
"""SpecForge 0.2.0's own `specforge export --to sglang` (export/to_sglang.py export_to_sglang) on SpecForge training
checkpoints, for tests/test_vllm_oracle.py to compare with eaglectl's export of the same checkpoint.

Runs in the speculators environment scripts/vllm_oracle/setup.sh builds, with SpecForge's python files
($EAGLECTL_SPECFORGE_SRC, from `pip download --no-deps specforge==0.2.0`) first on sys.path; imports nothing of
eaglectl. Input (argv[1]): a JSON list of {"name", "checkpoint", "draft_config", "output"}. One JSON document on
stdout's last line.
"""
from __future__ import annotations

import json
import os
import sys
import traceback

SRC = os.environ.get("EAGLECTL_SPECFORGE_SRC", "")
if SRC and SRC not in sys.path:
    sys.path.insert(0, SRC)


def main() -> int:
    import importlib.metadata as md
    import io
    from contextlib import redirect_stdout

    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    records = []
    for case in cases:
        rec = {"name": case["name"], "output": case["output"], "errors": []}
        try:
            from specforge.export.to_sglang import export_to_sglang

            with redirect_stdout(io.StringIO()):  # its progress lines; stdout carries the JSON
                export_to_sglang(case["checkpoint"], case["draft_config"], case["output"])
        except Exception as exc:
            rec["errors"].append(f"{type(exc).__name__}: {str(exc)[:400]}")
            rec["traceback"] = traceback.format_exc()[-1500:]
        records.append(rec)
    import glob

    found = sorted(glob.glob(os.path.join(SRC, "specforge-*.dist-info")))
    version = os.path.basename(found[-1])[len("specforge-"):-len(".dist-info")] if found else "?"
    print(json.dumps({"specforge_version": version, "transformers_version": md.version("transformers"),
                      "records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
