"""`eaglectl export`: every layout, NeMo's pinned behaviours, idempotence, atomicity, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from eaglectl.checkpoint.resolve import resolve
from eaglectl.demo.samples import save_json
from tests.helpers import read_all, run_json


def tree(d: Path) -> dict[str, tuple[str, int]]:
    """name -> (sha256, mtime_ns) of every file in a directory."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.parametrize("key", ["nemo-consolidated", "nemo-sharded", "nemo-legacy-eagle3", "nemo-legacy-eagle"])
def test_export_every_layout_keeps_every_weight(cli, samples, key):
    src = resolve(samples[key])
    source_values = {n: src.weights.load(n).clone() for n in src.weights.tensors}
    code, doc = run_json(cli, "export", samples[key])
    assert code == 0, doc
    r = doc["result"]
    assert r["action"] == "written"
    assert all(v["ok"] for v in r["verification"])
    out = Path(r["output"])
    written = read_all(out)
    # every input tensor is either written (maybe renamed) or listed as dropped
    dropped = {d["name"] for d in r["dropped"]}
    for name, value in source_values.items():
        if name in dropped:
            continue
        assert torch.equal(written[r["renamed"].get(name, name)], value), name
    assert set(written) - {r["renamed"].get(n, n) for n in source_values} <= set(r["generated"])


def test_consolidated_export_beside_the_checkpoint_then_unchanged(cli, samples):
    d = samples["nemo-consolidated"]
    source = tree(d / "model")
    code, doc = run_json(cli, "export", d)
    assert code == 0 and Path(doc["result"]["output"]) == (d / "sglang").resolve()
    assert tree(d / "model") == source  # the checkpoint NeMo wrote is left as it was
    cfg = json.loads((d / "sglang" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLMEagle3"]  # stale LlamaEagle3DraftModel rewritten
    assert cfg["num_hidden_layers"] == 1
    assert cfg["parallel_drafting"] is False  # other keys untouched
    names = set(read_all(d / "sglang"))
    assert "midlayer.self_attn.q_proj.weight" in names and "d2t" in names and "t2d" in names
    before = tree(d / "sglang")
    code, doc = run_json(cli, "export", d)
    assert code == 0 and doc["result"]["action"] == "unchanged"
    assert tree(d / "sglang") == before  # same bytes, same mtime


def test_d2t_built_from_meta_preserves_selected_order(cli, samples):
    d = samples["nemo-consolidated"]
    meta = torch.load(d / "eagle_meta.pt", weights_only=True)
    run_json(cli, "export", d)
    t = read_all(d / "sglang")
    assert t["d2t"].dtype == torch.int64
    assert torch.equal(t["d2t"] + torch.arange(128), meta["selected_token_ids"])
    assert torch.equal(t["t2d"], meta["selected_token_mask"])


def test_sglang_ready_dir_is_left_untouched(cli, samples):
    d = samples["specforge"]
    before = tree(d)
    code, doc = run_json(cli, "export", d)
    assert code == 0 and doc["result"]["action"] == "unchanged"
    assert tree(d) == before


def test_an_sglang_ready_dir_left_untouched_still_gets_the_exports_warnings(cli, samples, tmp_path):
    """Verified in place, it skipped the NaN / Inf scan and the t2d check a written export gets: the same warnings."""
    from tests.helpers import ready_head_with_nan_and_stale_t2d

    d = ready_head_with_nan_and_stale_t2d(samples["specforge"], tmp_path / "head")
    before = tree(d)
    result = cli("export", d, "--json")
    doc = json.loads(result.stdout)["result"]
    assert result.exit_code == 0 and doc["action"] == "unchanged" and tree(d) == before
    assert [w.split(":")[0] for w in doc["warnings"]] == ["1 tensor(s) hold NaN / Inf values", "t2d-mismatch"]
    assert "warning: 1 tensor(s) hold NaN / Inf values: fc.weight (1 NaN)" in result.stderr


def test_legacy_eagle_exports_without_token_map_keeping_architecture(cli, samples):
    d = samples["nemo-legacy-eagle"]
    code, doc = run_json(cli, "export", d)
    assert code == 0
    out = d / "sglang"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLMEagle"]
    assert not (out / "speculative_token_map.pt").exists() and doc["result"]["token_map"] is None
    assert "fc.bias" in read_all(out)


def test_legacy_32_layer_config_becomes_one_layer(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    assert json.loads((d / "config.json").read_text())["num_hidden_layers"] == 32
    run_json(cli, "export", d)
    assert json.loads((d / "sglang" / "config.json").read_text())["num_hidden_layers"] == 1


def test_dry_run_writes_nothing(cli, samples):
    d = samples["nemo-consolidated"]
    before = tree(d / "model")
    listing = sorted(p.name for p in d.iterdir())
    code, doc = run_json(cli, "export", d, "--dry-run")
    assert code == 0 and doc["result"]["action"] == "dry-run"
    assert "architectures: ['LlamaEagle3DraftModel'] -> ['LlamaForCausalLMEagle3']" in doc["result"]["config_changes"]
    assert tree(d / "model") == before  # stale config byte-identical
    assert sorted(p.name for p in d.iterdir()) == listing


def test_force_rerun_is_byte_identical(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    run_json(cli, "export", d)
    first = {k: v[0] for k, v in tree(d / "sglang").items()}
    code, doc = run_json(cli, "export", d, "--force")
    assert code == 0 and doc["result"]["action"] == "written"
    assert {k: v[0] for k, v in tree(d / "sglang").items()} == first


def test_second_export_of_unchanged_source_is_unchanged(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    run_json(cli, "export", d)
    before = tree(d / "sglang")
    _code, doc = run_json(cli, "export", d)
    assert doc["result"]["action"] == "unchanged" and tree(d / "sglang") == before


def test_drop_embeddings_is_listed(cli, samples):
    code, doc = run_json(cli, "export", samples["nemo-consolidated"], "--drop-embeddings")
    assert code == 0
    assert [d["name"] for d in doc["result"]["dropped"]] == ["model.embed_tokens.weight"]
    assert "embed_tokens.weight" not in read_all(Path(doc["result"]["output"]))


def test_dtype_conversion(cli, samples, tmp_path):
    out = tmp_path / "fp32"
    code, _doc = run_json(cli, "export", samples["specforge"], "--dtype", "fp32", "--output", out)
    assert code == 0
    t = read_all(out)
    assert t["fc.weight"].dtype == torch.float32 and t["d2t"].dtype == torch.int64 and t["t2d"].dtype == torch.bool
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"


def test_sharding_writes_an_index_and_verifies(cli, samples, tmp_path):
    out = tmp_path / "sharded"
    code, doc = run_json(cli, "export", samples["nemo-consolidated"], "--output", out, "--max-shard-size", "60KB")
    assert code == 0, doc
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 1 and set(index["weight_map"].values()) == {p.name for p in shards}
    assert resolve(out).weights.index_file is not None


def test_unknown_tensors_are_dropped_with_reason(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    state = torch.load(d / "draft_model.pt", weights_only=True)
    state["draft_model.rotary_emb.inv_freq"] = torch.ones(8)
    torch.save(state, d / "draft_model.pt")
    code, doc = run_json(cli, "export", d)
    assert code == 0
    assert {x["name"]: x["reason"] for x in doc["result"]["dropped"]} == {
        "draft_model.rotary_emb.inv_freq": "no SGLang Llama EAGLE parameter takes it"}


def test_eagle_with_meta_writes_token_map(cli, samples):
    d = samples["nemo-legacy-eagle"]
    import shutil

    shutil.copy(samples["nemo-consolidated"] / "eagle_meta.pt", d / "eagle1_meta.pt")
    code, doc = run_json(cli, "export", d)
    assert code == 0
    tm = torch.load(doc["result"]["token_map"], weights_only=True)
    assert tm.dtype == torch.int64 and tm.shape == (128,)


def test_p_eagle_is_refused(cli, samples):
    result = cli("export", samples["p-eagle"])
    assert result.exit_code == 1
    assert "vLLM >= 0.16" in result.stderr and "parallel_drafting" in result.stderr
    assert "Traceback" not in result.stderr


def test_algorithm_mismatch_is_refused(cli, samples):
    result = cli("export", samples["nemo-legacy-eagle"], "--algorithm", "EAGLE3")
    assert result.exit_code == 1 and "contradicts the weights" in result.stderr


def test_bad_selected_ids_are_refused(cli, samples):
    d = samples["nemo-consolidated"]
    meta = torch.load(d / "eagle_meta.pt", weights_only=True)
    meta["selected_token_ids"][5] = meta["selected_token_ids"][4]
    torch.save(meta, d / "eagle_meta.pt")
    before = tree(d / "model")
    result = cli("export", d)
    assert result.exit_code == 1 and "not unique" in result.stderr
    assert tree(d / "model") == before
    meta["selected_token_ids"][5] = 100000
    torch.save(meta, d / "eagle_meta.pt")
    result = cli("export", d)
    assert result.exit_code == 1 and "[0, 512)" in result.stderr


def test_shape_contradicting_config_is_refused(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_key_value_heads"] = 4
    save_json(d / "config.json", cfg)
    result = cli("export", d)
    assert result.exit_code == 1 and "shapes contradict the config" in result.stderr
    assert not (d / "sglang").exists()


def test_output_not_writable(cli, samples, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli("export", samples["specforge"], "--output", blocker / "out", "--force")
    assert result.exit_code == 1 and result.stderr.startswith("error:")


def test_locked_output_gives_a_clear_message(cli, samples):
    from eaglectl.export.atomic import exclusive_lock

    d = samples["nemo-legacy-eagle3"]
    with exclusive_lock((d / "sglang").resolve()):
        result = cli("export", d)
    assert result.exit_code == 1 and "another eaglectl process" in result.stderr
    assert not (d / "sglang").exists()


def _export_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "eaglectl", "export", *map(str, args)]


def test_disk_full_fails_cleanly_and_keeps_previous_output(samples, tmp_path):
    import resource
    import signal

    out = tmp_path / "out"
    assert subprocess.run(_export_cmd(samples["specforge"], "--output", out, "--force")).returncode == 0
    before = tree(out)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    proc = subprocess.run(_export_cmd(samples["specforge"], "--output", out, "--force", "--dtype", "fp32"),
                          preexec_fn=limit, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "write failed" in proc.stderr and "Traceback" not in proc.stderr
    assert tree(out) == before
    assert not [p for p in tmp_path.iterdir() if "eaglectl-stage" in p.name]


def test_sigkill_leaves_output_absent_or_complete(samples, tmp_path):
    """SIGKILL at a few moments: the output is absent or verifies; the next run succeeds and cleans up."""
    import random
    import time

    from eaglectl.export.exporter import verify_output
    from eaglectl.export.plan import build_plan

    src = samples["nemo-consolidated"]
    plan = build_plan(resolve(src))
    rng = random.Random(0)
    for trial in range(4):
        out = tmp_path / f"out{trial}"
        proc = subprocess.Popen(_export_cmd(src, "--output", out), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 3.0))
        proc.kill()
        proc.wait()
        if out.exists():
            assert all(v.ok for v in verify_output(out, plan))
        again = subprocess.run(_export_cmd(src, "--output", out), capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert all(v.ok for v in verify_output(out, plan))
        assert not [p for p in tmp_path.iterdir() if "eaglectl-stage" in p.name or "eaglectl-old" in p.name]


def test_concurrent_exports_end_with_one_correct_result(samples, tmp_path):
    from eaglectl.export.exporter import verify_output
    from eaglectl.export.plan import build_plan

    src = samples["nemo-legacy-eagle3"]
    out = tmp_path / "same"
    procs = [subprocess.Popen(_export_cmd(src, "--output", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        assert code == 0 or "another eaglectl process" in err
    assert all(v.ok for v in verify_output(out, build_plan(resolve(src))))


def test_exports_of_different_checkpoints_run_in_parallel(samples, tmp_path):
    procs = [subprocess.Popen(_export_cmd(samples[k], "--output", tmp_path / k), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for k in ("nemo-consolidated", "nemo-legacy-eagle3")]
    assert [p.wait() for p in procs] == [0, 0]


def test_stale_staging_dirs_are_cleaned(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    leftover = d / ".sglang.eaglectl-stage-dead"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    code, _ = run_json(cli, "export", d)
    assert code == 0 and not leftover.exists()
    assert os.path.isdir(d / "sglang")


def test_legacy_pickle_with_views_exports_every_value(cli, samples, tmp_path):
    """Pickled tensors are kernel-copied from their offset inside the zip when contiguous and file-mapped; views
    (a transposed matrix, rows of a shared storage, tied weights) and dtype changes still come out exact."""
    d = samples["nemo-legacy-eagle3"]
    state = torch.load(d / "draft_model.pt", weights_only=True)
    fc = state["draft_model.fc.weight"]
    state["draft_model.fc.weight"] = fc.t().contiguous().t()  # same values, non-contiguous
    head = "draft_model.lm_head.weight"
    shared = torch.cat([state[head], torch.zeros(3, fc.shape[0], dtype=fc.dtype)])
    state[head] = shared[: state[head].shape[0]]  # rows of a larger storage
    norm = state["draft_model.norm.weight"]
    state["draft_model.layers.0.input_layernorm.weight"] = norm  # tied: one storage, two names
    torch.save(state, d / "draft_model.pt")
    ws = resolve(d).weights
    assert ws.tensors["draft_model.fc.weight"].data_offset is None  # not contiguous: goes through user space
    offset = ws.tensors[head].data_offset
    assert offset is not None
    with open(ws.tensors[head].file, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(ws.tensors[head].nbytes)
    assert torch.equal(torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).view(state[head].shape), state[head])
    for dtype, cast in (("keep", None), ("fp32", torch.float32)):
        out = tmp_path / dtype
        code, doc = run_json(cli, "export", d, "--output", out, "--dtype", dtype)
        assert code == 0, doc
        written = read_all(out)
        renamed = doc["result"]["renamed"]
        for name, value in state.items():
            want = value if cast is None else value.to(cast)
            assert torch.equal(written[renamed.get(name, name)], want), (dtype, name)


def test_value_scan_reads_each_tensor_only_after_the_writer_copied_it(cli, samples, monkeypatch):
    """The NaN / Inf scan follows the writer through the page cache instead of reading the same file from
    another position at the same time."""
    import threading

    from eaglectl.checkpoint.weights import WeightSet
    from eaglectl.export import exporter as export_mod

    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    real_add, real_iter, real_raw = export_mod._Written.add, WeightSet.iter_row_chunks, WeightSet.raw_chunks

    def add(self, name):
        with lock:
            events.append(("written", name))
        real_add(self, name)

    def iter_row_chunks(self, name, chunk_bytes):
        with lock:
            events.append(("read", name))
        yield from real_iter(self, name, chunk_bytes)

    def raw_chunks(self, name, chunk_bytes):  # the scan of plainly stored bytes (numpy, no torch)
        with lock:
            events.append(("read", name))
        return real_raw(self, name, chunk_bytes)

    monkeypatch.setattr(export_mod._Written, "add", add)
    monkeypatch.setattr(WeightSet, "iter_row_chunks", iter_row_chunks)
    monkeypatch.setattr(WeightSet, "raw_chunks", raw_chunks)
    code, doc = run_json(cli, "export", samples["nemo-consolidated"], "--max-shard-size", "20KB")
    assert code == 0, doc
    renamed = doc["result"]["renamed"]
    reads = [name for kind, name in events if kind == "read"]
    assert len(reads) >= 10  # every float tensor but the embeddings, over several shards
    for name in reads:
        assert ("written", renamed.get(name, name)) in events[: events.index(("read", name))], name


def _rewrite_zip_entry(path: Path, suffix: str, data: bytes) -> None:
    """Rewrite one entry of a torch zip (stored, 64-byte aligned as torch writes it) keeping the others."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    tmp = path.with_suffix(".rewrite")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in entries:
            zf.writestr(name, data if name.endswith(suffix) else payload)
    tmp.replace(path)


def test_foreign_byte_order_pickle_is_never_raw_copied(cli, samples, tmp_path):
    """torch byte-swaps a big-endian zip's storages in memory: the file's bytes are not the tensor's, so the
    export must write what torch.load returns, not what the file holds."""
    d = samples["nemo-legacy-eagle3"]
    _rewrite_zip_entry(d / "draft_model.pt", "/byteorder", b"big")
    loaded = torch.load(d / "draft_model.pt", weights_only=True)
    ws = resolve(d).weights
    assert all(t.data_offset is None for t in ws.tensors.values())
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0, doc
    written = read_all(tmp_path / "out")
    renamed = doc["result"]["renamed"]
    for name, value in loaded.items():  # bit for bit: swapped bytes include NaN patterns
        assert written[renamed.get(name, name)].flatten().view(torch.uint8).tolist() == \
            value.flatten().view(torch.uint8).tolist(), name


def test_source_replaced_during_export_is_refused(cli, samples, monkeypatch):
    from eaglectl.export import exporter as export_mod

    d = samples["nemo-consolidated"]
    weights = d / "model" / "model.safetensors"
    real = export_mod._write_all

    def touch_then_write(*args, **kwargs):
        st = weights.stat()
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a training job rewrote it
        return real(*args, **kwargs)

    monkeypatch.setattr(export_mod, "_write_all", touch_then_write)
    before = tree(d / "model")
    result = cli("export", d)
    assert result.exit_code == 1
    assert "changed while eaglectl was exporting it" in result.stderr
    assert {k: v[0] for k, v in tree(d / "model").items()} == {k: v[0] for k, v in before.items()}
    from eaglectl.export.atomic import STAGE_TAG

    assert not [p for p in d.iterdir() if STAGE_TAG in p.name]  # the staging directory is gone


# Truncates the source on the writer's first converted tensor, then runs the CLI: with mmap'd reads, touching a
# page past the new end of the file kills the process with SIGBUS (exit -7, no message, staging left behind).
TRUNCATING_DRIVER = r"""
import os, sys
from eaglectl.export import writer as writer
victim, argv = sys.argv[1], sys.argv[2:]
real = writer._write_tensor
def truncate_then_write(t, *args):
    if os.stat(victim).st_size > 4096:
        os.truncate(victim, 4096)
    return real(t, *args)
writer._write_tensor = truncate_then_write
from eaglectl.cli.app import main
sys.argv = ["eaglectl", *argv]
main()
"""


@pytest.mark.parametrize(("key", "weights"), [("specforge", "model.safetensors"),
                                              ("nemo-legacy-eagle3", "draft_model.pt"),
                                              ("eagle-research", "pytorch_model.bin")])
def test_source_truncated_during_conversion_is_a_clean_error(samples, tmp_path, key, weights):
    from eaglectl.export.atomic import STAGE_TAG

    d = samples[key]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", TRUNCATING_DRIVER, str(d / weights), "export", str(d),
                           "--dtype", "fp32", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert (d / weights).stat().st_size == 4096  # the truncation really happened mid-export
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "changed while eaglectl was exporting it" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and not [p for p in tmp_path.iterdir() if STAGE_TAG in p.name]


def test_unused_tensors_are_never_read(cli, samples, monkeypatch):
    """A tensor nothing takes (export drops it) is not scanned for NaN / Inf, however large it is: no read of the
    source touches its bytes (every read of tensor values, torch's or numpy's, goes through `_pread_into`)."""
    from eaglectl.checkpoint.weights import WeightSet, open_weights
    from eaglectl.demo.samples import save_safetensors

    d = samples["specforge"]
    with safe_open(d / "model.safetensors", framework="pt") as fh:
        tensors = {k: fh.get_tensor(k).clone() for k in fh.keys()}  # noqa: SIM118 (no iteration protocol)
    save_safetensors(d / "model.safetensors", {**tensors, "optimizer.exp_avg": torch.zeros(512, 64)})
    unused = open_weights([d / "model.safetensors"]).tensors["optimizer.exp_avg"]
    assert unused.data_offset is not None
    lo, hi = unused.data_offset, unused.data_offset + unused.nbytes
    reads: list[tuple[int, int]] = []
    real = WeightSet._pread_into

    def spy(self, fd, path, offset, view):
        reads.append((offset, offset + len(view)))
        return real(self, fd, path, offset, view)

    monkeypatch.setattr(WeightSet, "_pread_into", spy)
    for args in (["inspect", d], ["export", d, "--dtype", "fp32", "--output", d.parent / "out"]):
        reads.clear()
        result = cli(*args)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert reads and not [r for r in reads if r[0] < hi and r[1] > lo], (lo, hi)


# --- which SGLang releases the export loads in ---------------------------------------------------------------------
def test_one_layer_export_loads_in_every_known_release(cli, samples):
    code, doc = run_json(cli, "export", samples["nemo-consolidated"])
    r = doc["result"]
    assert code == 0 and r["sglang_releases"] == ["0.5.9–0.5.23"]
    assert [(v["version"], v["releases"], v["ok"]) for v in r["verification"]] == [
        ("read-back", None, True), ("0.5.9", "0.5.9", True), ("0.5.10", "0.5.10–0.5.11", True),
        ("0.5.12", "0.5.12–0.5.14", True), ("0.5.15", "0.5.15–0.5.16", True), ("0.5.17", "0.5.17–0.5.23", True)]
    assert all(not v["problems"] for v in r["verification"])
    assert any(n.startswith("midlayer.") for n in r["renamed"].values())  # the names 0.5.9 reads too


def test_multi_layer_export_says_0_5_12_and_older_ranges_do_not_apply(cli, tmp_path):
    from tests.synthetic_heads import head, write

    src = write(tmp_path / "two", *head(layers=2, names="layers"))
    code, doc = run_json(cli, "export", src, "-o", tmp_path / "out")
    r = doc["result"]
    assert code == 0 and r["sglang_releases"] == ["0.5.12–0.5.23"]
    old = next(v for v in r["verification"] if v["version"] == "0.5.9")
    assert old["ok"] and old["problems"] == ["not applicable: needs SGLang >= 0.5.12 (2 decoder layers)"]
    result = cli("export", src, "-o", tmp_path / "out", "--force")
    assert "loads completely in SGLang 0.5.12–0.5.23" in result.stdout


def test_verification_fails_a_range_that_would_misload(tmp_path):
    from eaglectl.export.exporter import verify_output
    from eaglectl.export.plan import build_plan
    from tests.synthetic_heads import head, write

    src = write(tmp_path / "flag-only", *head(norm_before_fc=True))
    plan = build_plan(resolve(src))
    results = {v.version: v for v in verify_output(src, plan)}
    assert results["0.5.9"].ok and results["0.5.12"].ok
    assert not results["0.5.17"].ok and results["0.5.17"].problems == ["uninitialised model.input_norm.weight"]


def test_text_summaries_say_what_happened(cli, samples):
    d = samples["nemo-legacy-eagle3"]
    dry = cli("export", d, "--dry-run").stdout
    assert "tensors: 15 would be written," in dry and "nothing was written" in dry
    first = cli("export", d).stdout
    assert "tensors: 15 written," in first
    again = cli("export", d).stdout
    assert "tensors: 15 up to date (nothing written)," in again and "left untouched" in again



def test_float16_conversion_that_would_overflow_is_refused_naming_the_tensors(cli, samples, tmp_path):
    from safetensors.torch import load_file, save_file

    d = samples["specforge"]
    weights = load_file(d / "model.safetensors")
    assert weights["fc.weight"].dtype == torch.bfloat16
    weights["fc.weight"][0, 0] = 1e6  # finite in bf16, beyond float16's 65504
    weights["midlayer.mlp.down_proj.weight"][1, 1] = -3e5
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "fp16"
    result = cli("export", d, "--dtype", "float16", "--output", out)
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "float16" in error and "Inf" in error and "fc.weight" in error and "midlayer.mlp.down_proj.weight" in error
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing written, nothing left
    assert cli("export", d, "--dtype", "float32", "--output", out).exit_code == 0  # the range float32 has


def test_the_deepest_aux_id_exports_and_verifies(cli, samples, tmp_path):
    """An aux id of the last layer eaglectl accepts is written for vLLM as id + 1 at the top level (vLLM's
    numbering); reading the staged config back must accept that value, not fail the export's own verification."""
    from eaglectl.checkpoint.resolve import MAX_LAYERS

    src = samples["specforge"]
    cfg = json.loads((src / "config.json").read_text())
    cfg.setdefault("eagle_config", {})["eagle_aux_hidden_state_layer_ids"] = [1, 2, MAX_LAYERS - 1]
    save_json(src / "config.json", cfg)
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0, doc
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["eagle_aux_hidden_state_layer_ids"] == [2, 3, MAX_LAYERS]
    assert written["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 2, MAX_LAYERS - 1]
