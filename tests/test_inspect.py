"""`eaglectl inspect`: every layout and every finding, through the CLI."""

from __future__ import annotations

import json

import pytest

from eaglectl.demo.samples import save_json, save_safetensors
from tests.helpers import run_json


def view_for(doc: dict, release: str) -> dict:
    """The "as stored" loader view whose span of releases holds `release`."""
    from eaglectl.engines.sglang.rules import releases_between

    return next(v for v in doc["result"]["loader_as_is"] if release in releases_between(v["version"], v["last"]))


def codes(doc: dict) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in doc["result"]["findings"]}


@pytest.mark.parametrize("key", ["nemo-consolidated", "nemo-sharded", "nemo-legacy-eagle3", "nemo-legacy-eagle",
                                 "specforge", "eagle-research"])
def test_inspect_every_layout_json(cli, samples, key):
    code, doc = run_json(cli, "inspect", samples[key])
    loads_nothing = key == "nemo-legacy-eagle3"  # draft_model.* as stored: SGLang loads none of it
    assert code == (1 if loads_nothing else 0), doc
    assert doc["schema_version"] == 1 and doc["command"] == "inspect" and doc["ok"] is not loads_nothing
    assert doc["result"]["tensors"]


def test_nemo_consolidated_findings(cli, samples):
    code, doc = run_json(cli, "inspect", samples["nemo-consolidated"])
    found = codes(doc)
    assert found["architectures"] == "warning"
    assert found["num-hidden-layers"] == "warning"
    assert found["skipped-tensors"] == "warning"  # model.layers.0.* is skipped by SGLang 0.5.9
    assert found["token-map-ignored"] == "info"
    assert doc["result"]["layout"] == "nemo-consolidated"
    assert doc["result"]["sglang_ready"] is False
    assert [(v["version"], v["last"]) for v in doc["result"]["loader_as_is"]] == [("0.5.9", "0.5.11"),
                                                                                  ("0.5.12", "0.5.23")]
    assert view_for(doc, "0.5.9")["skipped"] and not view_for(doc, "0.5.15")["skipped"]
    assert any("layers.1" in p for p in view_for(doc, "0.5.15")["uninitialized"])  # 8 layers built, 7 never loaded


def test_legacy_prefix_is_reported_as_skipped(cli, samples):
    _, doc = run_json(cli, "inspect", samples["nemo-legacy-eagle3"])
    finding = next(f for f in doc["result"]["findings"] if f["code"] == "skipped-tensors")
    assert "draft_model.fc.weight (0.5.9–0.5.23)" in finding["message"]  # neighbouring release spans merged
    assert codes(doc)["missing-d2t"] == "warning"  # buildable from eagle3_meta.pt


def test_findings_are_shown_worst_first(cli, samples, tmp_path):
    target = tmp_path / "deep"
    target.mkdir()
    config = json.loads((samples["target"] / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 16}))
    result = cli("inspect", samples["nemo-legacy-eagle3"], "--target", target)
    shown = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and
             line.split()[0] in ("error", "warning", "info")]
    assert "info" in shown and "warning" in shown
    assert shown == sorted(shown, key=["error", "warning", "info"].index), shown


def test_specforge_is_sglang_ready(cli, samples):
    code, doc = run_json(cli, "inspect", samples["specforge"])
    assert code == 0
    assert doc["result"]["layout"] == "sglang-ready" and doc["result"]["sglang_ready"] is True
    assert {f["severity"] for f in doc["result"]["findings"]} <= {"info"}


def test_p_eagle_is_an_error_naming_vllm(cli, samples):
    result = cli("inspect", samples["p-eagle"])
    assert result.exit_code == 1
    assert "P-EAGLE" in result.stdout and "vLLM >= 0.16" in result.stdout


def test_missing_d2t_without_meta_is_an_error(cli, samples):
    d = samples["nemo-consolidated"]
    (d / "eagle_meta.pt").unlink()
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and codes(doc)["missing-d2t"] == "error"


def test_missing_required_tensor_is_an_error(cli, samples):
    from safetensors import safe_open

    d = samples["specforge"]
    with safe_open(str(d / "model.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k).clone() for k in fh.keys() if k != "midlayer.self_attn.o_proj.weight"}  # noqa: SIM118
    save_safetensors(d / "model.safetensors", tensors)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1
    assert "o_proj" in next(f["message"] for f in doc["result"]["findings"] if f["severity"] == "error")


def test_shape_contradicting_config_is_an_error(cli, samples):
    d = samples["specforge"]
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 256
    save_json(d / "config.json", cfg)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and "shape" in codes(doc)


def test_the_error_line_names_each_finding_code_once(cli, samples):
    """Three tensors contradicting the config are three `shape` findings, one `shape (x3)` in the error line (10,000
    of them made a 70 KB line)."""
    d = samples["specforge"]
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 256
    save_json(d / "config.json", cfg)
    result = cli("inspect", d)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and errors == ["error: 3 error finding(s): shape (x3)"], result.stderr


def test_dtype_mix_warning(cli, samples):
    import torch
    from safetensors import safe_open

    d = samples["specforge"]
    with safe_open(str(d / "model.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k).clone() for k in fh.keys()}  # noqa: SIM118
    tensors["fc.weight"] = tensors["fc.weight"].to(torch.float32)
    save_safetensors(d / "model.safetensors", tensors)
    _, doc = run_json(cli, "inspect", d)
    assert codes(doc)["dtype-mix"] == "warning"


def test_embeddings_reported(cli, samples):
    _, doc = run_json(cli, "inspect", samples["eagle-research"])
    assert codes(doc)["embeddings"] == "info"


def test_target_checks(cli, samples, tmp_path):
    from eaglectl.demo.samples import target_config

    target = tmp_path / "t"
    cfg = dict(target_config(), hidden_size=128, vocab_size=1024, num_hidden_layers=5, torch_dtype="float16",
               max_position_embeddings=8192)
    save_json(target / "config.json", cfg)
    d = samples["specforge"]
    code, doc = run_json(cli, "inspect", d, "--target", target)
    found = codes(doc)
    assert code == 1
    assert found["target-hidden"] == "error" and found["target-vocab"] == "error"
    assert found["aux-layer-ids"] == "error"  # [1, 3, 4]: 4 is the last layer of a 5-layer target
    assert found["target-dtype"] == "warning" and found["context-length"] == "warning"


def test_target_matching_passes(cli, samples):
    code, doc = run_json(cli, "inspect", samples["specforge"], "--target", samples["target"])
    assert code == 0
    assert not {"target-hidden", "target-vocab", "aux-layer-ids"} & set(codes(doc))


def test_hub_id_inspect(cli, samples, hub_cache):
    from tests.hub_cache import cache_dir_of, cache_repo

    cache_repo(hub_cache, "org/eagle3-head", cache_dir_of(samples["eagle-research"]))
    code, doc = run_json(cli, "inspect", "org/eagle3-head")
    _, local = run_json(cli, "inspect", samples["eagle-research"])
    assert code == 0 and doc["result"]["layout"] == local["result"]["layout"] == "sglang-ready"
    assert doc["result"]["hub"]["repo_id"] == "org/eagle3-head"
    assert doc["result"]["findings"] == local["result"]["findings"]


def test_table_output_goes_to_stdout_and_is_not_json(cli, samples):
    result = cli("inspect", samples["nemo-consolidated"])
    assert result.exit_code == 0
    assert "Findings" in result.stdout and "architectures" in result.stdout
    assert result.stderr == ""


# --- the verdict per SGLang release ------------------------------------------------------------------------------
def _finding(doc: dict, code: str) -> dict:
    return next(f for f in doc["result"]["findings"] if f["code"] == code)


def test_norm_before_fc_head_names_the_minimum_release(cli, tmp_path):
    from tests.synthetic_heads import head, write

    d = write(tmp_path / "nbf", *head(input_norm=True, norm_before_fc=True))
    _, doc = run_json(cli, "inspect", d)
    views = doc["result"]["loader_as_is"]
    assert [(v["version"], v["last"], v["ok"]) for v in views] == [("0.5.9", "0.5.16", False),
                                                                   ("0.5.17", "0.5.23", True)]
    assert views[0]["skipped"] == ["input_norm.weight"] and views[0]["ignored_config"] == ["norm_before_fc"]
    found = _finding(doc, "sglang-minimum")
    assert found["severity"] == "warning" and "needs SGLang >= 0.5.17" in found["message"]
    assert "SGLang 0.5.9–0.5.16" in found["message"] and found["fix"] == "serve with SGLang >= 0.5.17"
    assert doc["result"]["sglang"]["minimum"] == "0.5.17"


def test_multi_layer_head_needs_0_5_12_and_is_not_an_error(cli, tmp_path):
    from tests.synthetic_heads import head, write

    d = write(tmp_path / "two", *head(layers=2))
    code, doc = run_json(cli, "inspect", d)
    assert code == 0, doc["result"]["findings"]
    assert "needs SGLang >= 0.5.12 (2 decoder layers)" in _finding(doc, "sglang-minimum")["message"]
    layers = _finding(doc, "layers")
    assert layers["severity"] == "warning" and layers["fix"] == "serve with SGLang >= 0.5.12"
    assert layers["message"].startswith("SGLang 0.5.9–0.5.11: builds exactly one EAGLE-3 layer")
    assert doc["result"]["sglang"] == {"serves": ["0.5.12–0.5.23"], "minimum": "0.5.12",
                                       "needs": ["2 decoder layers"], "newest_known": "0.5.23"}


def test_legacy_aux_norm_names_need_0_5_12(cli, tmp_path):
    from tests.synthetic_heads import head, write

    d = write(tmp_path / "aux", *head(norms="aux_norm", use_aux_norm=True))
    _, doc = run_json(cli, "inspect", d)
    assert "needs SGLang >= 0.5.12" in _finding(doc, "sglang-minimum")["message"]
    assert doc["result"]["sglang"]["serves"] == ["0.5.12–0.5.23"]
    assert view_for(doc, "0.5.11")["ignored_config"] == ["use_aux_norm"] and view_for(doc, "0.5.12")["ok"]


def test_a_head_newer_releases_would_misload_gets_a_finding(cli, tmp_path):
    from tests.synthetic_heads import head, write

    d = write(tmp_path / "flag-only", *head(norm_before_fc=True))  # the flag without input_norm.weight
    _, doc = run_json(cli, "inspect", d)
    found = _finding(doc, "sglang-newer-misloads")
    assert found["message"].startswith("SGLang 0.5.17–0.5.23 would load this head wrong")
    assert "model.input_norm.weight" in found["message"] and "0.5.9–0.5.16 loads it" in found["message"]
    assert doc["result"]["sglang"]["serves"] == ["0.5.9–0.5.16"]


def test_a_plain_head_has_no_release_findings(cli, samples):
    _, doc = run_json(cli, "inspect", samples["specforge"])
    assert not {"sglang-minimum", "sglang-newer-misloads"} & set(codes(doc))
    assert [(v["version"], v["last"]) for v in doc["result"]["loader_as_is"]] == [("0.5.9", "0.5.23")]
    assert doc["result"]["sglang"]["serves"] == ["0.5.9–0.5.23"]


def test_aux_capture_that_differs_per_release_on_a_deepseek_target(cli, tmp_path):
    from eaglectl.demo.samples import target_config
    from tests.synthetic_heads import head, write

    d = write(tmp_path / "ds", *head(eagle_config={"eagle_aux_hidden_state_layer_ids": [2, 3, 5]}))
    save_json(tmp_path / "t" / "config.json", dict(target_config(), model_type="deepseek_v3"))
    _, doc = run_json(cli, "inspect", d, "--target", tmp_path / "t")
    found = _finding(doc, "aux-capture")
    assert "SGLang 0.5.9–0.5.12 captures the inputs of layers [3, 4, 6]" in found["message"]
    assert "SGLang 0.5.13–0.5.23 captures the inputs of layers [2, 3, 5]" in found["message"]
    save_json(tmp_path / "t" / "config.json", target_config())  # llama: one rule in every release
    _, doc = run_json(cli, "inspect", d, "--target", tmp_path / "t")
    assert "aux-capture" not in codes(doc)


def test_text_output_shows_release_spans(cli, tmp_path):
    from tests.synthetic_heads import head, write

    d = write(tmp_path / "nbf", *head(input_norm=True, norm_before_fc=True))
    out = cli("inspect", d).stdout
    assert "0.5.9–0.5.16" in out and "0.5.17–0.5.23" in out and "needs >= 0.5.17" in out


def test_a_head_sglang_would_load_nothing_of_is_an_error(cli, samples):
    """NeMo legacy names every tensor `draft_model.*`: as stored, no SGLang release loads any of them. Every other
    finding about it is a warning (export fixes each), but served as it is the head is random: exit 1."""
    code, doc = run_json(cli, "inspect", samples["nemo-legacy-eagle3"])
    assert code == 1 and doc["ok"] is False
    found = codes(doc)
    assert found["loads-nothing"] == "error" and found["skipped-tensors"] == "warning"
    message = next(f for f in doc["result"]["findings"] if f["code"] == "loads-nothing")["message"]
    assert "would load none of the head's 13 weight tensor(s)" in message and "0.5.9–0.5.23" in message
    result = cli("inspect", samples["nemo-legacy-eagle3"])  # text: the report, then one error line
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and errors == ["error: 1 error finding(s): loads-nothing"]
    assert "hint: run `eaglectl export" in result.stderr
    code, doc = run_json(cli, "inspect", samples["nemo-consolidated"])  # 0.5.12+ load it: warnings only
    assert code == 0 and "loads-nothing" not in codes(doc)
