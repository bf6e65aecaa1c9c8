"""`eaglectl token-map`: from meta, from d2t, validation, EAGLE3 notice, atomic write."""

from __future__ import annotations

import torch

from tests.helpers import run_json


def test_token_map_from_meta(cli, samples):
    d = samples["nemo-consolidated"]
    code, doc = run_json(cli, "token-map", d)
    assert code == 0
    r = doc["result"]
    assert r["draft_vocab"] == 128 and r["sglang_uses_it"] is False and "eagle_meta.pt" in r["ids_from"]
    tm = torch.load(r["output"], weights_only=True)
    meta = torch.load(d / "eagle_meta.pt", weights_only=True)
    assert tm.dtype == torch.int64 and torch.equal(tm, meta["selected_token_ids"])


def test_token_map_from_d2t(cli, samples, tmp_path):
    out = tmp_path / "tm.pt"
    code, doc = run_json(cli, "token-map", samples["specforge"], "--output", out)
    assert code == 0 and "d2t" in doc["result"]["ids_from"]
    from safetensors import safe_open

    with safe_open(str(samples["specforge"] / "model.safetensors"), "pt") as fh:
        d2t = fh.get_tensor("d2t")
    assert torch.equal(torch.load(out, weights_only=True), d2t + torch.arange(128))


def test_eagle3_notice_on_stderr_json_clean(cli, samples):
    result = cli("token-map", samples["nemo-consolidated"], "--json")
    assert "ignores --speculative-token-map for EAGLE3" in result.stderr
    assert result.stdout.lstrip().startswith("{")


def test_nothing_to_build_from(cli, samples):
    result = cli("token-map", samples["nemo-legacy-eagle"])
    assert result.exit_code == 1 and "nothing to build a token map from" in result.stderr


def test_a_full_vocabulary_eagle_head_is_told_it_needs_no_token_map(cli, samples):
    code, doc = run_json(cli, "token-map", samples["nemo-legacy-eagle"])
    assert code == 1
    assert "drafts over the whole vocabulary" in doc["error"]["message"]
    assert "SGLang serves it without --speculative-token-map" in doc["error"]["message"]
    assert "reduced draft vocabulary" in doc["error"]["hint"]
    assert not (samples["nemo-legacy-eagle"] / "speculative_token_map.pt").exists()


def test_eagle3_note_is_printed_once_on_stderr(cli, samples, tmp_path):
    result = cli("token-map", samples["specforge"], "--output", tmp_path / "tm.pt")
    assert result.exit_code == 0
    assert result.stderr.count("SGLang ignores --speculative-token-map") == 1
    assert "SGLang ignores" not in result.stdout and "Wrote" in result.stdout


def test_invalid_ids_leave_previous_file(cli, samples):
    d = samples["nemo-consolidated"]
    assert cli("token-map", d).exit_code == 0
    previous = (d / "speculative_token_map.pt").read_bytes()
    meta = torch.load(d / "eagle_meta.pt", weights_only=True)
    meta["selected_token_ids"][0] = -1
    torch.save(meta, d / "eagle_meta.pt")
    result = cli("token-map", d)
    assert result.exit_code == 1 and "[0, 512)" in result.stderr
    assert (d / "speculative_token_map.pt").read_bytes() == previous


def test_length_must_match_draft_vocab(cli, samples):
    d = samples["nemo-consolidated"]
    meta = torch.load(d / "eagle_meta.pt", weights_only=True)
    meta["selected_token_ids"] = meta["selected_token_ids"][:100]
    torch.save(meta, d / "eagle_meta.pt")
    result = cli("token-map", d)
    assert result.exit_code == 1 and "draft_vocab_size is 128" in result.stderr
