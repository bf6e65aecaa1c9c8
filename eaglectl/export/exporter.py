"""`export`: any drafter checkpoint eaglectl reads -> a directory SGLang loads completely.

Stream tensors (mmap / byte-range copies in, safetensors out), shard with huggingface_hub's splitter, stage
beside the destination, verify the staged copy against SGLang's loader rules, then swap it into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eaglectl import __version__, interrupts
from eaglectl.checkpoint.arrays import is_numpy
from eaglectl.checkpoint.peagle import reject_p_eagle
from eaglectl.checkpoint.resolve import Checkpoint, load_meta, resolve

# At module level: the scan thread must import nothing (a signal landing in the main thread's import can leave
# an import lock held, and the thread would wait for it forever).
from eaglectl.checkpoint.values import non_finite_message, prepare_scan, scan_non_finite, scanned_tensors
from eaglectl.engines.sglang import rules
from eaglectl.engines.sglang.architectures import own_loader
from eaglectl.engines.sglang.loader import replay_releases, serving_spans, simulate_load
from eaglectl.enums import Algorithm, ExportFormat, Layout
from eaglectl.errors import CheckFailedError, EaglectlError, OutputError, UsageError
from eaglectl.export.atomic import (
    commit_dir,
    locked_output,
    output_path,
    remove_own_tree,
    stage_dir,
    write_bytes_atomic,
)
from eaglectl.export.outputs import (
    EXPORT_DIR,
    MANIFEST,
    earlier_export_notes,
    read_manifest,
    refuse_foreign_dir,
    refuse_source_overlap,
    source_layer_count,
    source_paths,
    unpin_warning,
)
from eaglectl.export.plan import DroppedTensor, ExportPlan, PlannedTensor, build_plan, predict_tensors
from eaglectl.export.servable import export_warnings, require_servable
from eaglectl.export.token_map import TOKEN_MAP, token_map_bytes
from eaglectl.export.writer import (
    ALIGN_MIN_BYTES,
    OutTensor,
    RawSource,
    SafetensorsFile,
    array_bytes,
    header_bytes,
    rows_of,
    write_safetensors,
)
from eaglectl.jsonfile import dumps_config
from eaglectl.sizes import parse_size

if TYPE_CHECKING:
    from huggingface_hub import StateDictSplit

    from eaglectl.checkpoint.weights import WeightSet

DEFAULT_MAX_SHARD = "5GB"


@dataclass
class WrittenFile:
    path: str
    bytes: int


@dataclass
class Verification:
    version: str  # "read-back", or the release replayed (the first of its rule range)
    ok: bool
    loaded: int
    problems: list[str]
    releases: str | None = None  # the rule range that release stands for, e.g. "0.5.12–0.5.16"
    engine: str = "sglang"  # whose loader was replayed: sglang, vllm or speculators


@dataclass
class ExportReport:
    source: str
    layout: Layout
    algorithm: Algorithm
    output: Path
    action: str  # "written" | "unchanged" | "dry-run"
    format: ExportFormat = ExportFormat.sglang
    files: list[WrittenFile] = field(default_factory=list)
    tensors_written: int = 0
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: list[DroppedTensor] = field(default_factory=list)
    generated: dict[str, str] = field(default_factory=dict)
    config_changes: list[str] = field(default_factory=list)
    token_map: Path | None = None
    bytes: int = 0
    seconds: float = 0.0
    verification: list[Verification] = field(default_factory=list)
    sglang_releases: list[str] = field(default_factory=list)  # known release ranges that load the output completely
    vllm: str | None = None  # what vLLM (the release eaglectl knows) does with the output, in a few words
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # also printed on stderr; never a failure


ProgressFn = Callable[[int, int], None]
WarnFn = Callable[[str], None]


def servable_as_is(ckpt: Checkpoint, plan: ExportPlan) -> bool:
    """SGLang can load this directory as it stands: nothing to rename, build, drop or rewrite (what only vLLM reads
    aside: `vllm_ready_as_is` says whether it has that too)."""
    if ckpt.layout is Layout.nemo_legacy or plan.format is not ExportFormat.sglang or not plan.identity or any(
            c not in plan.vllm_only for c in plan.config_changes):
        return False
    needs_map = plan.algorithm is Algorithm.EAGLE and plan.selected_ids is not None
    return not needs_map or (ckpt.model_dir is not None and (ckpt.model_dir / TOKEN_MAP).is_file())


def vllm_ready_as_is(ckpt: Checkpoint, plan: ExportPlan) -> bool:
    """The directory holds what export writes for vLLM too (its config keys, the later layers' norm copies)."""
    return servable_as_is(ckpt, plan) and not plan.vllm_only and not any(t.vllm_only for t in plan.tensors)


def layout_name(ckpt: Checkpoint, plan: ExportPlan) -> Layout:
    """The layout as `inspect` names it: an `hf` dir SGLang loads as it is (and whose names eaglectl replayed) is
    `sglang-ready`. `serve` and `export` report the same name."""
    if ckpt.layout is Layout.hf and own_loader(ckpt.config) is None and servable_as_is(ckpt, plan):
        return Layout.sglang_ready
    return ckpt.layout


def default_output(ckpt: Checkpoint, plan: ExportPlan, *, force: bool = False) -> Path:
    """A new `sglang/` directory beside the checkpoint's files (in the epoch dir for NeMo consolidated, never
    `model/` in place); an SGLang-ready dir is its own output (left untouched) unless `force` asks for a fresh copy.
    A Hub drafter's files are in the Hub cache, which is never written into: an export of one is a local copy,
    `./<name>-sglang/` here (`serve` loads a ready one from its cached snapshot instead)."""
    from eaglectl.export import speculators_format

    assert ckpt.root is not None and ckpt.model_dir is not None
    name = speculators_format.EXPORT_DIR if plan.format is ExportFormat.speculators else EXPORT_DIR
    if ckpt.hub is not None:
        return Path.cwd() / f"{ckpt.hub.repo_id.split('/')[-1]}-{name}"
    if servable_as_is(ckpt, plan) and not force:
        return ckpt.model_dir
    return ckpt.root / name


def export_checkpoint(path: str, *, output: str | Path | None = None, revision: str | None = None,
                      algorithm: Algorithm | None = None, dtype: str = "keep", drop_embeddings: bool = False,
                      max_shard_size: str = DEFAULT_MAX_SHARD, force: bool = False, dry_run: bool = False,
                      progress: ProgressFn | None = None, aux_layer_ids: list[int] | None = None,
                      draft_config: str | None = None, fmt: ExportFormat = ExportFormat.sglang,
                      verifier: str | None = None, on_warning: WarnFn | None = None) -> ExportReport:
    """resolve -> plan (checked against SGLang's rules; `fmt` speculators: vLLM's and speculators') -> write ->
    verify -> swap. A safetensors source with a meta file starts its kernel copy before the meta is read: reading
    it imports torch (about a second), which then runs beside the copy instead of before it. `on_warning` gets a
    warning about what the swap will replace before it happens (it is in `report.warnings` too)."""
    t0 = time.monotonic()
    if verifier is not None and fmt is not ExportFormat.speculators:
        raise UsageError("--verifier is written into a speculators config: pass it with --format speculators")
    # A Hub id: its files fetched into the Hub cache, read from there. The meta is found, not read yet.
    ckpt = resolve(path, revision=revision, load_meta=False, draft_config=draft_config)
    if fmt is ExportFormat.sglang:
        reject_p_eagle(ckpt)
    early = None if dry_run or fmt is not ExportFormat.sglang else EarlyCopy.start(
        ckpt, output=output, algorithm=algorithm, dtype=dtype, drop_embeddings=drop_embeddings,
        max_shard_size=max_shard_size, progress=progress)
    try:
        load_meta(ckpt)
        plan = build_plan(ckpt, algorithm=algorithm, dtype=dtype, drop_embeddings=drop_embeddings,
                          aux_layer_ids=aux_layer_ids, fmt=fmt, verifier=verifier)
        require_servable(ckpt, plan)
    except BaseException:
        if early is not None:
            early.abandon()
        raise
    return export_plan(ckpt, plan, output=output, max_shard_size=max_shard_size, force=force, dry_run=dry_run,
                       progress=progress, started=t0, early=early, on_warning=on_warning)


def export_plan(ckpt: Checkpoint, plan: ExportPlan, *, output: str | Path | None = None,
                max_shard_size: str = DEFAULT_MAX_SHARD, force: bool = False, dry_run: bool = False,
                progress: ProgressFn | None = None, started: float | None = None,
                early: EarlyCopy | None = None, on_warning: WarnFn | None = None) -> ExportReport:
    """Write a plan already made (and checked servable) for a resolved local checkpoint: `serve` plans once.
    `early`: the copy `EarlyCopy.start` began before the plan was complete; used when the plan turned out as it
    predicted (same output, same tensors), abandoned otherwise."""
    try:
        return _export_plan(ckpt, plan, output=output, max_shard_size=max_shard_size, force=force,
                            dry_run=dry_run, progress=progress, started=started, early=early,
                            on_warning=on_warning)
    finally:
        if early is not None:
            early.abandon()  # a no-op once its staging dir was swapped into place


def _export_plan(ckpt: Checkpoint, plan: ExportPlan, *, output: str | Path | None, max_shard_size: str,
                 force: bool, dry_run: bool, progress: ProgressFn | None, started: float | None,
                 early: EarlyCopy | None, on_warning: WarnFn | None) -> ExportReport:
    t0 = time.monotonic() if started is None else started
    if ckpt.weights is not None:
        ckpt.weights.doing = "exporting"  # names what was going on if a source file changes under the reads
    out = output_path(Path(output) if output is not None else default_output(ckpt, plan, force=force))
    max_bytes = _parse_size(max_shard_size)
    speculators = plan.format is ExportFormat.speculators
    report = ExportReport(
        source=ckpt.source, layout=layout_name(ckpt, plan), algorithm=plan.algorithm, output=out, action="dry-run",
        format=plan.format, renamed=plan.renames, dropped=plan.dropped, generated=plan.generated_from,
        config_changes=plan.config_changes, tensors_written=len(plan.tensors), bytes=plan.total_bytes,
        sglang_releases=[] if speculators else serving_spans(replay_releases(plan.config, plan.shapes,
                                                                             plan.algorithm)),
        vllm=vllm_verdict(plan))
    if output is None:
        report.notes.extend(earlier_export_notes(ckpt))
    in_place = ckpt.model_dir is not None and out == ckpt.model_dir.resolve()
    if in_place and servable_as_is(ckpt, plan) and not force:
        report.action = "unchanged"
        fresh = default_output(ckpt, plan, force=True)
        report.notes.insert(0, "already SGLang-ready: verified and left untouched (--force writes a fresh export to "
                               f"{fresh})")
        if not vllm_ready_as_is(ckpt, plan):
            lacks = ", ".join(c.split(":")[0] for c in plan.vllm_only) or "the later layers' input_layernorm copies"
            report.notes.insert(1, f"vLLM reads this directory otherwise (it lacks {lacks}); --force writes an export "
                                   f"to {fresh} that both engines read as trained")
        report.verification = verify_output(out, plan.sglang_part(ckpt.config))
        report.warnings = head_warnings(ckpt, plan)  # served as it is: what a written export would warn of
        report.seconds = time.monotonic() - t0
        return report
    refuse_unsafe_output(ckpt, out)
    token_map_needed = plan.algorithm is Algorithm.EAGLE and plan.selected_ids is not None
    assert ckpt.weights is not None
    if dry_run:
        report.warnings = head_warnings(ckpt, plan)
        if (unpinned := unpin_warning(out, plan.config)) is not None:
            report.warnings.append(unpinned)
        report.files = [WrittenFile(str(out / n), b) for n, b in _planned_files(plan, max_bytes, token_map_needed,
                                                                                ckpt.weights)]
        report.token_map = out / TOKEN_MAP if token_map_needed else None
        report.notes.append("dry run: nothing was written")
        report.seconds = time.monotonic() - t0
        return report
    if not out.parent.is_dir():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out.parent}: cannot create ({exc.strerror or exc})") from exc
    fingerprint = _fingerprint(ckpt, plan)
    shards = _shards(plan, max_bytes, ckpt.weights)
    if early is not None and not early.matches(out, plan, shards):
        early.abandon()
        early = None
    with early.held() if early is not None else locked_output(out):
        if not force and _existing_matches(out, fingerprint):
            report.action = "unchanged"
            report.notes.append(f"{out} already holds this export (same source): verified and left untouched")
            report.verification = verify_output(out, plan)
            report.token_map = out / TOKEN_MAP if (out / TOKEN_MAP).is_file() else None
            report.seconds = time.monotonic() - t0
            return report
        refuse_foreign_dir(out)  # again under the lock: what is there now is what the swap replaces
        unpinned = unpin_warning(out, plan.config)
        if unpinned and on_warning is not None:
            on_warning(unpinned)  # said while the export holding the ids is still there (Ctrl-C keeps it)
        kept = "previous output left intact" if read_manifest(out) is not None else "nothing written"
        staged = early.staged if early is not None else stage_dir(out)
        written = early.written if early is not None else _Written()
        order = _write_order(shards)
        assert ckpt.weights is not None
        prepare_scan(ckpt.weights, _scan_names(ckpt, plan, order))  # its imports, here: the thread imports nothing
        scan = _Background(_scan_values, ckpt, plan, order, written)
        try:
            report.files = _write_all(ckpt, plan, staged, shards, fingerprint, token_map_needed,
                                      progress, on_tensor=written.add, early=early)
            report.warnings = _value_warnings(scan.result()) + export_warnings(ckpt, plan)
            if unpinned:
                report.warnings.append(unpinned)
            report.verification = verify_output(staged, plan)
            failed = [v for v in report.verification if not v.ok]
            if failed:
                raise CheckFailedError(f"the written export does not verify: {'; '.join(failed[0].problems[:3])}")
            refuse_foreign_dir(out)  # and just before the swap: a file dropped in meanwhile is not deleted
            with interrupts.held():  # a signal here lands before the swap (nothing replaced) or after it (done)
                commit_dir(staged, out, last=MANIFEST)
                interrupts.committed()
            if early is not None:
                early.committed()
        except BaseException as exc:
            scan.cancel()
            if early is not None:
                early.stop_copy()
            remove_own_tree(staged)
            if isinstance(exc, OSError) and not isinstance(exc, EaglectlError):
                raise OutputError(f"{out}: write failed ({exc.strerror or exc}); {kept}") from exc
            raise
    report.files = [WrittenFile(str(out / Path(f.path).name), f.bytes) for f in report.files]
    report.token_map = out / TOKEN_MAP if token_map_needed else None
    report.action = "written"
    report.seconds = time.monotonic() - t0
    return report


EARLY_COPY_MIN_BYTES = 64 * 1024 * 1024  # below this the copy is shorter than waiting for it is worth


class _ByteCounter:
    """Bytes written so far, from any thread, reported to the progress callback."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        import threading

        self.total, self.progress, self.done = total, progress, 0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            done = self.done
        if self.progress:
            self.progress(done, self.total)


class EarlyCopy:
    """The kernel copy of a safetensors source's stored tensors, started before its meta file is read.

    Reading the meta is a `torch.load`, and importing torch takes about as long as copying a 2 GB head; the
    copy runs in a thread (`copy_file_range` releases the GIL) while the main thread imports torch, reads the
    meta and finishes the plan. It writes into the staging dir and holds the output lock, as the export would;
    the tensors built from the meta (d2t, t2d) are left as holes of the sizes the config gives. The export uses
    it only if the finished plan is the predicted one (same output, same tensors, same shards): otherwise, or
    on any failure, it stops the copy and removes the staging dir."""

    def __init__(self, out: Path, tensors: list[PlannedTensor], shards: StateDictSplit, staged: Path,
                 files: dict[str, SafetensorsFile], stacks: tuple[Any, Any], counter: _ByteCounter) -> None:
        import threading

        self.out, self.tensors, self.shards, self.staged, self.files = out, tensors, shards, staged, files
        self.progress_bytes = counter
        self.written = _Written()
        self._lock, self._cleanup = stacks  # the output lock; closing the files and removing the staging dir
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._copy, daemon=True, name="eaglectl-early-copy")
        self._thread.start()

    @classmethod
    def start(cls, ckpt: Checkpoint, *, output: str | Path | None, algorithm: Algorithm | None, dtype: str,
              drop_embeddings: bool, max_shard_size: str, progress: ProgressFn | None) -> EarlyCopy | None:
        """Start the copy when it can be predicted and is worth it; None otherwise (the export then plans
        first and copies after, as it always can)."""
        import contextlib

        ws = ckpt.weights
        if ws is None or ws.format != "safetensors" or ws.remote or ckpt.meta is None or ckpt.meta.loaded:
            return None
        try:
            tensors = predict_tensors(ckpt, algorithm=algorithm, dtype=dtype, drop_embeddings=drop_embeddings)
            if tensors is None:
                return None
            outs = _out_tensors(ws, tensors, None)

            if sum(o.nbytes for o in outs if isinstance(o.source, RawSource)) < EARLY_COPY_MIN_BYTES:
                return None
            if output is None:  # the default output, when the plan cannot make the source its own output
                if ckpt.hub is not None or ckpt.root is None or all(t.source == t.name for t in tensors):
                    return None
                out = output_path(ckpt.root / EXPORT_DIR)
            else:
                out = output_path(Path(output))
            refuse_unsafe_output(ckpt, out)
            if not out.parent.is_dir() or read_manifest(out) is not None:
                return None  # an earlier export there: the finished plan decides whether it is unchanged
            shards = _split(tensors, parse_size(max_shard_size), ws)
        except (EaglectlError, ValueError):
            return None  # the export says it, in its own order, once the plan is complete
        lock, cleanup = contextlib.ExitStack(), contextlib.ExitStack()
        try:
            lock.enter_context(locked_output(out))
            refuse_foreign_dir(out)
            staged = stage_dir(out)
            cleanup.callback(remove_own_tree, staged)
            by_name = {o.name: o for o in outs}
            files = {}
            for fname, names in shards.filename_to_tensors.items():
                files[fname] = SafetensorsFile(staged / fname, [by_name[n] for n in names])
                cleanup.callback(files[fname].close)
        except BaseException as exc:
            cleanup.close()
            lock.close()
            if isinstance(exc, EaglectlError | OSError):
                return None
            raise
        return cls(out, tensors, shards, staged, files, (lock, cleanup),
                   _ByteCounter(sum(o.nbytes for o in outs), progress))

    def _copy(self) -> None:
        try:
            for file in self.files.values():
                file.write(lambda o: isinstance(o.source, RawSource), on_bytes=self.progress_bytes,
                           on_tensor=self.written.add, stop=self._stop)
        except BaseException as exc:
            self._error = exc

    def matches(self, out: Path, plan: ExportPlan, shards: StateDictSplit) -> bool:
        """The finished plan is the one the copy was started for."""
        def key(ts: list[PlannedTensor]) -> list[tuple]:
            return [(t.name, t.dtype, t.shape, t.source) for t in ts]

        return (out == self.out and key(plan.tensors) == key(self.tensors)
                and shards.filename_to_tensors == self.shards.filename_to_tensors)

    def held(self) -> Any:
        """The output lock, taken when the copy started; released when the export leaves it."""
        import contextlib

        @contextlib.contextmanager
        def lock():
            try:
                yield self.out
            finally:
                self.abandon()
        return lock()

    def wait_copied(self) -> None:
        """Until every raw tensor is copied; the copy's error, if it had one."""
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop_copy(self) -> None:
        self._stop.set()
        self._thread.join()

    def committed(self) -> None:
        """The staging dir is the output now: nothing of it is removed (the lock is released on leaving)."""
        self._cleanup.pop_all()

    def abandon(self) -> None:
        """Stop the copy, close the files, remove the staging dir (unless swapped in), then release the lock.
        Idempotent."""
        self.stop_copy()
        self._cleanup.close()
        self._lock.close()


class _Written:
    """The output tensors the writer has finished. The NaN / Inf scan follows the writer: it reads a tensor
    only once its bytes were copied, mostly from the page cache the copy just filled, rather than reading the
    same file at another position at the same time (two streams competing for one disk on a cold source)."""

    def __init__(self) -> None:
        import threading

        self._done: set[str] = set()
        self._cond = threading.Condition()

    def add(self, name: str) -> None:
        with self._cond:
            self._done.add(name)
            self._cond.notify_all()

    def wait(self, name: str, stop) -> None:
        """Until `name` is written or `stop` is set (the export failed: the scan is being cancelled)."""
        with self._cond:
            while name not in self._done and not stop.is_set():
                self._cond.wait(0.1)


CANCEL_WAIT_S = 10.0  # a scan checks for cancellation between 16 MB chunks: far under this


class _Background:
    """Run `fn(*args, stop=event)` in a thread; `result()` joins, `cancel()` asks it to stop and joins (a thread
    still inside torch at interpreter exit would abort the process).

    The NaN / Inf scan reads every scanned byte; it runs beside the write (both release the GIL), so an
    export costs about max(copy, scan) rather than their sum."""

    def __init__(self, fn, *args) -> None:
        import threading

        self._out: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True, name="eaglectl-scan")
        self._thread.start()

    def cancel(self) -> None:
        """Ask the thread to stop and wait for it, a bounded time: a daemon thread still waiting then (on a lock
        an interrupted main thread left) must not keep the process from exiting."""
        self._stop.set()
        self._thread.join(timeout=CANCEL_WAIT_S)

    def _run(self, fn, *args) -> None:
        try:
            self._out["value"] = fn(*args, stop=self._stop)
        except BaseException as exc:
            self._out["error"] = exc

    def result(self):
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


def _scan_values(ckpt: Checkpoint, plan: ExportPlan, order: list[str] | None = None, written: _Written | None = None,
                 stop=None) -> list:
    """NaN / Inf in the planned source tensors; with `written`, each one read after the writer copied it."""
    assert ckpt.weights is not None
    output_of = {t.source: t.name for t in plan.tensors if t.source}
    names = _scan_names(ckpt, plan, order)
    before = None
    if written is not None and stop is not None:
        def before(source: str) -> None:
            written.wait(output_of[source], stop)
    return scan_non_finite(ckpt.weights, names, stop=stop, before=before)


def _scan_names(ckpt: Checkpoint, plan: ExportPlan, order: list[str] | None) -> list[str]:
    """The source tensors the scan reads, in the order their outputs are written (`order`) or planned."""
    assert ckpt.weights is not None
    outputs = order or [t.name for t in plan.tensors]
    source_of = {t.name: t.source for t in plan.tensors if t.source}
    return scanned_tensors(ckpt.weights, [source_of[n] for n in outputs if n in source_of])


def _write_order(shards: StateDictSplit) -> list[str]:
    """Output tensor names in the order `_write_all` writes them."""
    return [name for names in shards.filename_to_tensors.values() for name in names]


def _value_warnings(found: list) -> list[str]:
    """NaN / Inf in the weights: a warning the CLI prints (the export itself is faithful), never a failure."""
    return [non_finite_message(found)] if found else []


def head_warnings(ckpt: Checkpoint, plan: ExportPlan) -> list[str]:
    """What an export warns of about the head it writes (NaN / Inf in the weights SGLang loads, t2d disagreeing
    with d2t, SpecForge's norm_output), for a head served as it stands, which no export writes (an SGLang-ready
    dir: `export` verifies it in place, `serve` launches it). Cost: the NaN / Inf scan, one read of the tensors
    SGLang loads (the embeddings left out)."""
    return _value_warnings(_scan_values(ckpt, plan)) + export_warnings(ckpt, plan)


def vllm_verdict(plan: ExportPlan) -> str | None:
    """What the vLLM release eaglectl knows does with the planned output, in a few words (EAGLE-3 heads)."""
    from eaglectl.engines.vllm.loader import simulate_load

    if plan.algorithm is not Algorithm.EAGLE3:
        return None
    sim = simulate_load(plan.config, plan.shapes)
    if sim.model_class is None and not sim.errors:
        return f"not replayed ({'; '.join(sim.notes[-1:])})"
    problems = [*sim.errors, *(f"leaves {p} uninitialised" for p in sim.uninitialized)]
    if problems:
        return f"vLLM {sim.release} would not load it right: {problems[0]}"
    capture = sim.capture_v1 if sim.runner == "V1" else sim.capture_v2
    where = f"captures {capture}" if capture else "captures the target's default layers (no aux ids recorded)"
    return f"loads completely in vLLM {sim.release} ({where})"


def _parse_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--max-shard-size {text!r}: {exc}") from None


def _shards(plan: ExportPlan, max_bytes: int, ws: WeightSet) -> StateDictSplit:
    return _split(plan.tensors, max_bytes, ws)


def _split(tensors: list[PlannedTensor], max_bytes: int, ws: WeightSet) -> StateDictSplit:
    """huggingface_hub's split of the planned tensors into shard files (the same split `save_torch_state_dict`
    makes): the writer's order. In each file, the tensors copied as bytes come first in their source order (so that
    one header padding lines them all up, `writer.aligned_padding`) when they are large enough to be padded for;
    the others sorted by name."""
    from huggingface_hub import split_state_dict_into_shards_factory

    sizes = {t.name: t.nbytes for t in tensors}
    split = split_state_dict_into_shards_factory(
        sizes, get_storage_size=lambda n: n, filename_pattern="model{suffix}.safetensors", max_shard_size=max_bytes)
    by_name = {t.name: t for t in tensors}
    files = {f: i for i, f in enumerate(ws.files)}

    def order(names: list[str]) -> list[str]:
        raw = {n: _raw_offset(ws, by_name[n]) for n in names}
        if sum(by_name[n].nbytes for n in names if raw[n] is not None) < ALIGN_MIN_BYTES:
            return sorted(names)
        return sorted(names, key=lambda n: (0, files[ws.tensors[by_name[n].source or ""].file], raw[n], n)
                      if raw[n] is not None else (1, 0, 0, n))

    split.filename_to_tensors = {fname: order(names) for fname, names in split.filename_to_tensors.items()}
    return split


def _raw_offset(ws: WeightSet, t: PlannedTensor) -> int | None:
    """Where a planned tensor's bytes lie in their source file when the writer copies them as they are (a stored
    tensor, dtype kept, contiguous in its file); None when it is built, converted or reshaped."""
    if t.source is None:
        return None
    info = ws.tensors[t.source]
    return info.data_offset if info.dtype == t.dtype else None


def _planned_files(plan: ExportPlan, max_bytes: int, token_map: bool, ws: WeightSet) -> list[tuple[str, int]]:

    files = []
    shapes = {t.name: t for t in plan.tensors}
    for fname, names in _shards(plan, max_bytes, ws).filename_to_tensors.items():
        outs = []
        for n in names:
            t, offset = shapes[n], _raw_offset(ws, shapes[n])
            source = RawSource(Path(), offset) if offset is not None else (lambda a, b: None)
            outs.append(OutTensor(n, t.dtype, t.shape, source))
        files.append((fname, len(header_bytes(outs)) + sum(o.nbytes for o in outs)))
    files.append(("config.json", len(dumps_config(plan.config))))
    if token_map:
        files.append((TOKEN_MAP, 0))
    return files


def _fingerprint(ckpt: Checkpoint, plan: ExportPlan) -> str:
    """Identifies (source files as they are now, and what the plan does with them) without reading data."""
    assert ckpt.weights is not None
    h = hashlib.sha256()
    files = [*ckpt.weights.files, *([ckpt.config_path] if ckpt.config_path else []),
             *([ckpt.meta.path] if ckpt.meta else [])]
    for f in files:
        st = f.stat()
        h.update(os.fsencode(f.resolve()) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())  # names need not be UTF-8
    h.update(dumps_config(plan.config))
    h.update(json.dumps([(t.name, t.dtype, t.shape, t.source) for t in plan.tensors]).encode())
    return h.hexdigest()


def refuse_unsafe_output(ckpt: Checkpoint, out: Path) -> None:
    """The output rules of `eaglectl.export.outputs` for an export of `ckpt` to `out`: not over, into or around the
    source; an existing directory only when empty or a previous eaglectl export with nothing else in it."""
    refuse_source_overlap(out, source_paths(ckpt))
    refuse_foreign_dir(out)


def up_to_date(ckpt: Checkpoint, plan: ExportPlan, out: Path) -> bool:
    """`out` holds the export of this source as it is now (what a re-export would leave unchanged)."""
    return _existing_matches(out, _fingerprint(ckpt, plan))


def _existing_matches(out: Path, fingerprint: str) -> bool:
    manifest = read_manifest(out)
    return manifest is not None and manifest.get("source_fingerprint") == fingerprint


def _out_tensors(ws: WeightSet, tensors: list[PlannedTensor], generated: dict[str, Any] | None) -> list[OutTensor]:
    """What the writer writes for each planned tensor, in order: a stored tensor whose dtype is kept is a byte
    range of its file (copied in the kernel); a converted one is read a chunk of rows at a time; a generated one
    is in memory (`generated` None: not built yet, a placeholder the early copy leaves as a hole)."""

    mapped = {f: ws.releasable_ranges(f) for f in ws.files} if ws.format == "torch" else {}
    outs = []
    for t in tensors:
        if t.source is None:
            value = generated[t.name] if generated else None
            outs.append(OutTensor(t.name, t.dtype, t.shape,
                                  array_bytes(value, t.dtype) if is_numpy(value) else rows_of(value)))
            continue
        info = ws.tensors[t.source]
        if (offset := _raw_offset(ws, t)) is not None:
            outs.append(OutTensor(t.name, t.dtype, t.shape, RawSource(info.file, offset, ws.identity.get(info.file))))
        elif info.shape != t.shape:  # the same elements in another shape (speculators' mask_hidden): small, whole
            outs.append(OutTensor(t.name, t.dtype, t.shape, rows_of(ws.load(t.source).reshape(t.shape))))
        else:
            outs.append(OutTensor(t.name, t.dtype, t.shape, _loaded_rows(ws, t.source),
                                  mapped=mapped.get(info.file, ())))
    return outs


def _write_all(ckpt: Checkpoint, plan: ExportPlan, staged: Path, shards: StateDictSplit, fingerprint: str,
               token_map: bool, progress: ProgressFn | None, *,
               on_tensor: Callable[[str], None] | None = None, early: EarlyCopy | None = None) -> list[WrittenFile]:

    ws = ckpt.weights
    assert ws is not None
    on_bytes = _ByteCounter(plan.total_bytes, progress)
    by_name = {t.name: t for t in plan.tensors}
    written: list[WrittenFile] = []
    overflowed: list[str] = []
    for fname, names in shards.filename_to_tensors.items():
        outs = _out_tensors(ws, [by_name[n] for n in names], plan.generated)
        if early is None:
            size = write_safetensors(staged / fname, outs, on_bytes=on_bytes, on_tensor=on_tensor,
                                     on_overflow=overflowed.append)
        else:  # the raw copies are the early copy's; the rest lands in its holes
            file = early.files[fname]
            file.tensors = outs
            file.write(lambda o: not isinstance(o.source, RawSource), on_bytes=early.progress_bytes,
                       on_tensor=on_tensor, on_overflow=overflowed.append)
            early.wait_copied()
            size = file.finish()
        written.append(WrittenFile(str(staged / fname), size))
    if overflowed:
        from eaglectl.export.plan import DTYPE_CODE

        label = {code: name for name, code in DTYPE_CODE.items()}
        dtypes = sorted({by_name[n].dtype for n in overflowed})
        shown = ", ".join(overflowed[:5]) + (f" and {len(overflowed) - 5} more" if len(overflowed) > 5 else "")
        raise CheckFailedError(
            f"converting to {'/'.join(label.get(d, d) for d in dtypes)} turns finite weights into Inf "
            f"(values beyond its range) in {len(overflowed)} tensor(s): {shown}",
            hint="export without --dtype, or with --dtype bfloat16 or float32")
    if shards.is_sharded:
        index = {"metadata": shards.metadata, "weight_map": shards.tensor_to_filename}
        written.append(_write_small(staged / "model.safetensors.index.json", _sorted_json(index)))
    written.append(_write_small(staged / "config.json", dumps_config(plan.config)))
    if token_map:
        written.append(_write_small(staged / TOKEN_MAP, token_map_bytes(plan.selected_ids)))
    manifest = {"eaglectl_export": 1, "eaglectl_version": __version__, "algorithm": plan.algorithm.value,
                "format": plan.format.value,
                "source_fingerprint": fingerprint, "files": sorted([Path(w.path).name for w in written] + [MANIFEST]),
                "renamed": plan.renames, "dropped": {d.name: d.reason for d in plan.dropped},
                "generated": plan.generated_from,
                # the source config's layer count: NeMo's names the training target (aux-ids-unpinned reads it)
                "source_num_hidden_layers": source_layer_count(
                    ckpt.config, read_manifest(ckpt.model_dir) if ckpt.model_dir is not None else None)}
    written.append(_write_small(staged / MANIFEST, _sorted_json(manifest)))
    return written


def _loaded_rows(ws: WeightSet, source: str) -> Callable[[int | None, int | None], Any]:
    """A row reader over a source tensor that needs converting (loaded whole, or a range of rows)."""
    return lambda start, stop: ws.load(source) if start is None or stop is None else ws.load_rows(source, start, stop)


def _sorted_json(obj: dict) -> bytes:
    """Indented, key-sorted JSON with a final newline: the same object always gives the same bytes."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _write_small(path: Path, data: bytes) -> WrittenFile:
    write_bytes_atomic(path, data)
    return WrittenFile(str(path), len(data))



def _verify_speculators(config: dict, shapes: dict) -> list[Verification]:
    """A speculators export: vLLM's load replayed over what was written, and speculators' own key check."""
    from eaglectl.engines.vllm.loader import simulate_load
    from eaglectl.engines.vllm.speculators import RELEASE, check_keys

    sim = simulate_load(config, shapes)
    issues = [*sim.errors, *(f"uninitialised {p}" for p in sim.uninitialized)]
    keys = check_keys(config, shapes)
    return [Verification(sim.release, not issues, len(sim.loaded), issues, engine="vllm"),
            Verification(RELEASE, keys.ok, len(shapes) - len(keys.unexpected),
                         [f"missing {k}" for k in keys.missing] + [f"unexpected {k}" for k in keys.unexpected]
                         + keys.shape_errors, engine="speculators")]


def verify_output(directory: Path, plan: ExportPlan) -> list[Verification]:
    """Re-open what was written and replay SGLang's loader of each rule range (one release per range) over it.

    A range whose loader cannot have what the head needs (an older release without a feature it uses) is
    reported as not applicable, not as a failure: the export's `sglang_releases` says which ranges serve it."""
    from eaglectl.engines.sglang.loader import minimum_release

    results = []
    try:
        ckpt = resolve(directory, load_meta=False)
    except EaglectlError as exc:
        return [Verification("read-back", False, 0, [str(exc)])]
    assert ckpt.weights is not None
    stored = {n: (t.dtype, t.shape) for n, t in ckpt.weights.tensors.items()}
    expected = {t.name: (t.dtype, t.shape) for t in plan.tensors}
    problems = []
    if stored != expected:
        missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
        changed = sorted(n for n in set(stored) & set(expected) if stored[n] != expected[n])
        problems.append(f"tensors differ from the plan (missing {missing[:3]}, extra {extra[:3]}, "
                        f"changed {changed[:3]})")
    if (ckpt.raw_config if ckpt.raw_config is not None else ckpt.config) != plan.config:
        problems.append("config.json differs from the planned config")
    results.append(Verification("read-back", not problems, len(stored), problems))
    shapes = {n: s for n, (_, s) in stored.items()}
    if plan.format is ExportFormat.speculators:
        return results + _verify_speculators(plan.config, shapes)
    arch = own_loader(ckpt.config)
    if arch is not None:
        results.append(Verification("loader", True, 0, [f"not replayed: SGLang loads {arch.name} with its own "
                                                        f"loader ({arch.source})"]))
        return results
    minimum, needs = minimum_release(ckpt.config, list(shapes), plan.algorithm)
    loaders = rules.EAGLE3_LOADERS if plan.algorithm is Algorithm.EAGLE3 else rules.EAGLE_LOADERS
    for rng in loaders:
        label = rng.label
        if minimum and rules.older(rng.last, minimum):
            results.append(Verification(rng.first, True, 0, [f"not applicable: needs SGLang >= {minimum} "
                                                             f"({', '.join(needs)})"], label))
            continue
        sim = simulate_load(ckpt.config, shapes, plan.algorithm, rng.first)
        issues = ([f"skipped {n}" for n in sim.skipped] + [f"uninitialised {n}" for n in sim.uninitialized]
                  + [f"ignored config {k}" for k in sim.ignored_config]
                  + [f"loaded twice {n}" for n in sim.overwritten] + sim.shape_errors + sim.problems)
        results.append(Verification(rng.first, sim.ok, len(sim.loaded), issues, label))
    return results
