#!/usr/bin/env python3
"""Notice SGLang releases newer than the loader rules eaglectl knows, and whether their loader files changed.

    python scripts/check_sglang_releases.py                  # ask the package index (pip), download, compare
    python scripts/check_sglang_releases.py --wheel-dir DIR  # offline: compare the sglang-*.whl already in DIR

Lists the releases on the index newer than `eaglectl.engines.sglang.rules.NEWEST_KNOWN`, downloads each wheel
(`pip download --no-deps`), and compares the sha256 of every file recorded in
`eaglectl/engines/sglang/loader_hashes.json` (for the newest known release) with the wheel's copy. It also names EAGLE
model files (`sglang/srt/models/*eagle*.py`) the record does not have. A wheel of a known release is compared
with that release's own record. Exit 0: no newer release, or newer ones with the same loader files (add them to
`rules.RELEASES` and the record); 1: a loader file changed (read the diff, update the rules); 2: the index or a
download failed. Not part of the default tests: it needs the package index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eaglectl.engines.sglang import rules

HASHES = Path(rules.__file__).with_name(rules.HASHES_FILE)
EAGLE_MODEL = re.compile(r"^sglang/srt/models/[^/]*eagle[^/]*\.py$")
WHEEL_NAME = re.compile(r"^sglang-([^-]+)-")
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # a loader source file is ~50 KB; a bigger member is not one


@dataclass
class WheelDiff:
    version: str
    against: str  # the recorded release it was compared with
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    new_eagle_files: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def drift(self) -> bool:
        return bool(self.changed or self.missing or self.new_eagle_files)


def load_record(path: Path = HASHES) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text())["releases"]


def diff_wheel(wheel: Path, version: str, record: dict[str, dict[str, str]]) -> WheelDiff:
    """Compare one wheel's loader files with the record of its own release, or of the newest recorded one."""
    against = version if version in record else max(record, key=lambda v: rules.release_key(v) or (0,))
    expected = record[against]
    diff = WheelDiff(version, against)
    with zipfile.ZipFile(wheel) as zf:
        members = {i.filename: i for i in zf.infolist()}
        for path, digest in sorted(expected.items()):
            info = members.get(path)
            if info is None:
                diff.missing.append(path)
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                diff.changed.append(path)
                continue
            if hashlib.sha256(zf.read(info)).hexdigest() == digest:
                diff.unchanged += 1
            else:
                diff.changed.append(path)
        diff.new_eagle_files = sorted(p for p in members if EAGLE_MODEL.match(p) and p not in expected)
    return diff


def wheel_version(wheel: Path) -> str | None:
    m = WHEEL_NAME.match(wheel.name)
    return m.group(1) if m else None


def index_versions(pip: list[str]) -> list[str]:
    """Every sglang release the package index lists (`pip index versions`)."""
    out = subprocess.run([*pip, "index", "versions", "sglang"], capture_output=True, text=True, timeout=300)
    m = re.search(r"Available versions:\s*(.+)", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"pip index versions sglang failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return [v.strip() for v in m.group(1).split(",") if v.strip()]


def newer_than_known(versions: list[str]) -> list[str]:
    newest = rules.release_key(rules.NEWEST_KNOWN)
    found = [v for v in versions if (rules.release_key(v) or (0,)) > newest]
    return sorted(found, key=lambda v: rules.release_key(v) or (0,))


def download(pip: list[str], version: str, dest: Path, python_version: str, platform: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
           "--platform", platform, "--platform", "any", f"sglang=={version}", "-d", str(dest)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wheels = sorted(dest.glob(f"sglang-{version}-*.whl"))
    if out.returncode != 0 or not wheels:
        raise RuntimeError(f"pip download sglang=={version} failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return wheels[0]


def report(diffs: list[WheelDiff]) -> int:
    drift = False
    for d in diffs:
        if not d.drift:
            print(f"sglang {d.version}: loader files as recorded for {d.against} ({d.unchanged} files)")
            continue
        drift = True
        print(f"sglang {d.version}: DRIFT against {d.against}")
        for p in d.changed:
            print(f"  changed  {p}")
        for p in d.missing:
            print(f"  missing  {p}")
        for p in d.new_eagle_files:
            print(f"  new      {p}")
    return 1 if drift else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel-dir", type=Path, help="offline: compare the sglang-*.whl files in this directory")
    ap.add_argument("--offline", action="store_true", help="never reach the index (needs --wheel-dir)")
    ap.add_argument("--hashes", type=Path, default=HASHES, help="recorded hashes (default: the package's)")
    ap.add_argument("--python-version", default="3.11", help="wheel tag to download (SGLang ships cp311 wheels)")
    ap.add_argument("--platform", default="manylinux_2_34_x86_64")
    args = ap.parse_args(argv)
    record = load_record(args.hashes)
    pip = [sys.executable, "-m", "pip"]
    if args.offline and args.wheel_dir is None:
        ap.error("--offline needs --wheel-dir")
    if args.wheel_dir is not None:
        wheels = sorted(args.wheel_dir.glob("sglang-*.whl"))
        if not wheels:
            print(f"no sglang-*.whl in {args.wheel_dir}", file=sys.stderr)
            return 2
        diffs = [diff_wheel(w, v, record) for w in wheels if (v := wheel_version(w))]
        return report(sorted(diffs, key=lambda d: rules.release_key(d.version) or (0,)))
    try:
        newer = newer_than_known(index_versions(pip))
        if not newer:
            print(f"no sglang release newer than {rules.NEWEST_KNOWN} on the index")
            return 0
        print(f"newer than {rules.NEWEST_KNOWN}: {', '.join(newer)}")
        with tempfile.TemporaryDirectory(prefix="sglang-wheels-") as tmp:
            diffs = [diff_wheel(download(pip, v, Path(tmp) / v, args.python_version, args.platform), v, record)
                     for v in newer]
    except (RuntimeError, OSError, subprocess.TimeoutExpired, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return report(diffs)


if __name__ == "__main__":
    sys.exit(main())
