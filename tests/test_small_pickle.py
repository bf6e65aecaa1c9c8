"""The torch-free meta reader: the same values as torch.load for what torch.save writes, and None (torch's path
decides) for anything else, hostile files included: no pickled code runs, no unbounded work."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest

from eaglectl.checkpoint import small_pickle
from eaglectl.checkpoint.resolve import read_meta
from eaglectl.errors import CheckpointError


def read_plain_torch_zip(path: Path, max_tensor_bytes: int = 1 << 30):
    return small_pickle.read_plain_torch_zip(path, max_tensor_bytes)


def _save(path: Path, obj) -> Path:
    import torch

    torch.save(obj, path)
    return path


def _same(a, b) -> bool:
    import numpy as np
    import torch

    if isinstance(b, torch.Tensor):
        return isinstance(a, np.ndarray) and a.shape == tuple(b.shape) and np.array_equal(a, b.numpy())
    if isinstance(b, dict):
        return isinstance(a, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_reads_what_torch_save_writes(tmp_path):
    import torch

    ids = torch.randperm(1000)[:64].sort().values
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[ids] = True
    obj = {"global_step": 100, "epoch": 0, "name": "run", "selected_token_ids": ids, "selected_token_mask": mask,
           "aux": [2, 5, 8], "nested": {"f16": torch.ones(3, dtype=torch.float16), "i32": torch.arange(4).int()},
           "view": torch.arange(20).reshape(4, 5)[:, 1:3], "ordered": OrderedDict(a=1), "empty": torch.empty(0, 3)}
    path = _save(tmp_path / "eagle_meta.pt", obj)
    fast = read_plain_torch_zip(path)
    assert fast is not None
    assert _same(fast, torch.load(path, weights_only=True))


def test_shared_storage_is_read_once(tmp_path):
    import torch

    base = torch.arange(10)
    fast = read_plain_torch_zip(_save(tmp_path / "m.pt", {"a": base, "b": base[2:5]}))
    assert fast is not None and fast["b"].tolist() == [2, 3, 4]


@pytest.mark.parametrize("case", ["bfloat16", "global", "big-endian", "requires-grad", "not-a-zip"])
def test_anything_else_is_left_to_torch(tmp_path, case):
    import torch

    path = tmp_path / "m.pt"
    if case == "bfloat16":
        _save(path, {"x": torch.ones(3, dtype=torch.bfloat16)})
    elif case == "global":
        _save(path, {"x": torch.device("cpu")})
    elif case == "big-endian":
        _save(path, {"x": torch.arange(3)})
        _rewrite(path, "byteorder", b"big")
    elif case == "requires-grad":
        _save(path, {"x": torch.ones(3, requires_grad=True)})
    else:
        path.write_bytes(pickle.dumps({"x": 1}))
    assert read_plain_torch_zip(path) is None


def _rewrite(path: Path, suffix: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in entries:
            zf.writestr(name, data if name.endswith(suffix) else payload)
    path.write_bytes(buf.getvalue())


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize("payload", [
    _Evil(),                                      # a callable outside the three globals
    ("storage-type", "build"),                    # BUILD on a storage marker (slots: refused)
    ("strides", (0,)),                            # a view repeating one element
    ("strides", (1,)),                            # a view past its storage (offset)
])
def test_hostile_pickles_run_nothing(tmp_path, payload, capfd):
    import torch

    path = _save(tmp_path / "m.pt", {"x": torch.arange(4)})
    if isinstance(payload, _Evil):
        data = pickle.dumps({"x": payload}, protocol=2)
    elif payload[0] == "storage-type":
        data = (b"\x80\x02}q\x00X\x01\x00\x00\x00xq\x01ctorch\nLongStorage\nq\x02}q\x03X\x05\x00\x00\x00dtypeq"
                b"\x04X\x02\x00\x00\x00|Oq\x05sbs.")
    else:
        data = _view_pickle(0 if payload[1] == (0,) else 3, payload[1][0])
    _rewrite(path, "data.pkl", data)
    assert read_plain_torch_zip(path) is None
    assert "pickled code ran" not in capfd.readouterr().out


def test_the_hand_written_pickle_above_reads_when_its_view_is_sound(tmp_path):
    """The control of the stride cases: the same bytes with offset 0 and stride 1 are a plain tensor."""
    import torch

    path = _save(tmp_path / "m.pt", {"x": torch.arange(4)})
    _rewrite(path, "data.pkl", _view_pickle(0, 1))
    fast = read_plain_torch_zip(path)
    assert fast is not None and fast["x"].tolist() == [0, 1, 2, 3]


def _view_pickle(offset: int, stride: int) -> bytes:
    """{"x": a 4-element view of storage "0" (4 int64) at `offset` with `stride`}, as torch.save spells it."""
    return (b"\x80\x02}q\x00X\x01\x00\x00\x00xctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
            b"ctorch\nLongStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
            + bytes([0x4B, offset]) + b"K\x04\x85" + bytes([0x4B, stride]) + b"\x85\x89}tRs.")


def test_the_declared_tensor_bytes_are_bounded(tmp_path):
    """Views over one storage may not declare more than the caller allows (the file's size times a factor)."""
    import torch

    base = torch.arange(100)
    path = _save(tmp_path / "m.pt", {f"v{i}": base[:] for i in range(10)})  # ten views, one storage
    assert read_plain_torch_zip(path, 10 * 800) is not None
    assert read_plain_torch_zip(path, 10 * 800 - 1) is None


def test_a_zip_torch_would_refuse_is_refused_the_same_way(tmp_path):
    """check_torch_zip runs first: a compressed record is one CheckpointError, as on torch's path."""
    import torch

    path = _save(tmp_path / "m.pt", {"x": torch.arange(4)})
    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in entries:
            zf.writestr(name, payload)
    with pytest.raises(CheckpointError, match="compressed"):
        read_meta(path)


def test_read_meta_gives_numpy_arrays_either_way(tmp_path, monkeypatch):
    """The fast path and torch's path give the same Meta (numpy int64 ids, bool mask)."""
    import numpy as np
    import torch

    ids = torch.tensor([3, 7, 9], dtype=torch.int32)
    mask = torch.zeros(12, dtype=torch.uint8)
    mask[ids.long()] = 1
    path = _save(tmp_path / "eagle_meta.pt", {"selected_token_ids": ids, "selected_token_mask": mask,
                                               "eagle_aux_hidden_state_layer_ids": torch.tensor([1, 4, 6])})
    fast = read_meta(path)
    monkeypatch.setattr(small_pickle, "read_plain_torch_zip", lambda p, n: None)
    slow = read_meta(path)
    for meta in (fast, slow):
        assert meta.selected_token_ids.dtype == np.int64 and meta.selected_token_ids.tolist() == [3, 7, 9]
        assert meta.selected_token_mask.dtype == np.bool_ and meta.selected_token_mask.sum() == 3
        assert meta.draft_vocab == 3 and meta.vocab == 12 and meta.aux_layer_ids == [1, 4, 6]


@pytest.mark.parametrize("ids", ["float", "2-D", "bool"])
def test_read_meta_refuses_non_integer_ids_on_both_paths(tmp_path, monkeypatch, ids):
    import torch

    value = {"float": torch.ones(3), "2-D": torch.ones(2, 2, dtype=torch.long),
             "bool": torch.ones(3, dtype=torch.bool)}[ids]
    path = _save(tmp_path / "eagle_meta.pt", {"selected_token_ids": value})
    with pytest.raises(CheckpointError, match="1-D integer"):
        read_meta(path)
    monkeypatch.setattr(small_pickle, "read_plain_torch_zip", lambda p, n: None)
    with pytest.raises(CheckpointError, match="1-D integer"):
        read_meta(path)


def _export_in_a_fresh_interpreter(src: Path, out: Path) -> str:
    """`eaglectl export SRC -o OUT` in a new process; whether it imported torch ("torch imported" / "no torch")."""
    code = ("import sys, runpy; sys.argv = ['eaglectl', 'export', sys.argv[1], '-o', sys.argv[2]]\n"
            "try:\n    runpy.run_module('eaglectl', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\n")
    run = subprocess.run([sys.executable, "-c", code, str(src), str(out)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert (out / "model.safetensors").is_file()
    return run.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("layout", ["nemo-consolidated", "specforge", "specforge-training"])
def test_exporting_never_imports_torch(samples, tmp_path, layout):
    """NeMo's one-file layout (safetensors + eagle_meta.pt), an SGLang-layout head whose d2t / t2d are stored
    tensors, and a SpecForge 0.2 training step (weights inside training_state.pt) export without torch:
    importing it costs about as much as copying a 2 GB head."""
    assert _export_in_a_fresh_interpreter(samples[layout], tmp_path / "out") == "no torch"


def _weights_both_ways(path: Path, monkeypatch):
    """open_weights over a pickle through the torch-free index, then through torch.load."""
    from eaglectl.checkpoint import weights

    fast = weights.open_weights([path])
    with monkeypatch.context() as m:
        m.setattr(weights, "_index_pickle", lambda f: None)
        slow = weights.open_weights([path])
    return fast, slow


def test_a_weights_pickle_is_indexed_as_torch_reads_it(tmp_path, monkeypatch):
    """Names, dtypes, shapes, byte offsets and values agree with torch's reading, views and shared storage
    included; nothing of torch is needed to plan or copy it."""
    import torch

    base = torch.randn(6, 8).to(torch.bfloat16)
    state = {"draft_model.fc.weight": base, "draft_model.t": base.t(), "draft_model.row": base[2],
             "ids": torch.arange(5), "half": torch.randn(3, 2, dtype=torch.float16), "empty": torch.empty(0, 4),
             "flag": torch.ones(3, dtype=torch.bool)}
    path = _save(tmp_path / "draft_model.pt", {"state_dict": state, "step": 3})
    fast, slow = _weights_both_ways(path, monkeypatch)
    assert fast.tensors == slow.tensors
    for name in state:
        assert torch.equal(fast.load(name), slow.load(name)), name
    assert fast.tensors["draft_model.fc.weight"].data_offset is not None  # copied in the kernel
    assert fast.tensors["draft_model.t"].data_offset is None  # a transposed view is read by rows


@pytest.mark.parametrize("case", ["float8", "no-tensors", "list"])
def test_weights_pickles_the_index_does_not_handle_go_to_torch(tmp_path, monkeypatch, case):
    import torch

    from eaglectl.checkpoint import weights

    obj = {"float8": {"w": torch.zeros(4, dtype=torch.float8_e4m3fn), "b": torch.ones(2)},
           "no-tensors": {"w": 1}, "list": [torch.ones(2)]}[case]
    path = _save(tmp_path / "model.pt", obj)
    assert weights._index_pickle(path) is None
    if case == "float8":
        assert weights.open_weights([path]).tensors["w"].dtype == "F8_E4M3"
    else:
        with pytest.raises(CheckpointError, match=r"not a dict of tensors|holds no tensors"):
            weights.open_weights([path])


def test_exporting_a_legacy_pickle_never_imports_torch(samples, tmp_path):
    """draft_model.pt (NeMo's legacy layout) is indexed from its pickle and copied in the kernel: no torch."""
    assert _export_in_a_fresh_interpreter(samples["nemo-legacy-eagle3"], tmp_path / "out") == "no torch"


def test_load_array_reads_stored_values_as_torch_does(tmp_path):
    """Plainly stored integer / bool / float tensors come back from their bytes (numpy, no torch); bf16 and a
    pickle's strided view through torch, converted; the values agree with torch's reading either way."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from eaglectl.checkpoint import weights

    values = {"d2t": torch.arange(-3, 5, dtype=torch.int64), "t2d": torch.tensor([True, False, True]),
              "f16": torch.randn(4, 3, dtype=torch.float16), "bf16": torch.randn(2, 3, dtype=torch.bfloat16),
              "empty": torch.zeros(0, 3, dtype=torch.int32)}
    save_file(values, str(tmp_path / "model.safetensors"))
    ws = weights.open_weights([tmp_path / "model.safetensors"])
    base = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    _save(tmp_path / "w.pt", {"view": base.t(), "plain": base})
    pt = weights.open_weights([tmp_path / "w.pt"])
    for ws_, name, want in [*((ws, k, v) for k, v in values.items()), (pt, "view", base.t()), (pt, "plain", base)]:
        got = ws_.load_array(name)
        assert isinstance(got, np.ndarray) and got.shape == tuple(want.shape), name
        assert np.array_equal(got, want.float().numpy() if want.dtype == torch.bfloat16 else want.numpy()), name
