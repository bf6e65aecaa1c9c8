"""One dtype vocabulary for every command: shown as torch spells it, the common short forms accepted."""

from __future__ import annotations

import json

import pytest

from eaglectl.enums import ExportDType, ServeDType, canonical_dtype


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("bf16", "bfloat16"), ("BF16", "bfloat16"), ("bfloat16", "bfloat16"), ("torch.bfloat16", "bfloat16"),
    ("fp16", "float16"), ("half", "float16"), ("fp32", "float32"), ("float", "float32"), ("int8", None), (None, None),
])
def test_canonical_dtype(spelling, canonical):
    assert canonical_dtype(spelling) == canonical


def test_enums_accept_every_spelling():
    assert ExportDType("bf16") is ExportDType.bfloat16
    assert ServeDType("FP16") is ServeDType.float16
    with pytest.raises(ValueError):
        ServeDType("int8")


@pytest.mark.parametrize("spelling", ["bf16", "bfloat16", "BF16"])
def test_export_dtype_spellings_write_the_same_export(cli, samples, tmp_path, spelling):
    out = tmp_path / spelling
    res = cli("export", samples["specforge"], "-o", out, "--dtype", spelling, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_serve_dtype_short_form_reaches_sglang_spelled_out(cli, samples):
    res = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--dtype", "fp16",
              "--print-only", "--json")
    assert res.exit_code == 0, res.output
    argv = json.loads(res.stdout)["result"]["argv"]
    assert argv[argv.index("--dtype") + 1] == "float16"


def test_unknown_dtype_is_a_usage_error_naming_the_choices(cli, samples):
    res = cli("export", samples["specforge"], "--dtype", "int8", "--json")
    assert res.exit_code == 2
    assert "keep, bfloat16, float16, float32" in json.loads(res.stdout)["error"]["message"]
