"""vLLM's and speculators' own code as the oracle for eaglectl's exports (marked `vllm_oracle`, off by default; run
by scripts/vllm_oracle/run.sh in the environments scripts/vllm_oracle/setup.sh builds, CPU only).

For every demo layout, both exports eaglectl writes (SGLang's layout, the default, and `--format speculators`) go
through vLLM 0.33's config parser, SpeculativeConfig, both model runners' aux-id resolution and the unmodified
Eagle3LlamaForCausalLM.load_weights (scripts/vllm_oracle/harness.py: every parameter NaN-filled first, each stored
tensor compared bit for bit where it landed), and the speculators exports through speculators 0.9's
`from_pretrained` (scripts/vllm_oracle/speculators_harness.py), whose tensors must equal eaglectl's source. Each
record is also compared with eaglectl's replay (eaglectl.engines.vllm): parameters, what is never loaded, capture
ids, fc width, norm_before_residual.

Environment: EAGLECTL_VLLM_ORACLE_PY (the vLLM environment's python), EAGLECTL_VLLM_SRC (vLLM 0.33's python files),
EAGLECTL_SPECULATORS_PY (the speculators environment's python); EAGLECTL_VLLM_ORACLE_RECORD=FILE keeps every
record as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm_oracle

VLLM_PY = os.environ.get("EAGLECTL_VLLM_ORACLE_PY")
SPECULATORS_PY = os.environ.get("EAGLECTL_SPECULATORS_PY")
HARNESS = Path(__file__).resolve().parent.parent / "scripts" / "vllm_oracle"
LAYOUTS = ["nemo-consolidated", "nemo-legacy-eagle3", "specforge", "eagle-research", "nemo-sharded", "p-eagle",
           "specforge-training", "specforge-ids-0-3-5"]
TARGET_LAYERS, TARGET_VOCAB = 8, 512


def _run(python: str, script: str, cases: list[dict], work: Path) -> dict:
    spec = work / f"{script}.cases.json"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "EAGLECTL_VLLM_SRC": os.environ.get("EAGLECTL_VLLM_SRC", "")}
    proc = subprocess.run([python, str(HARNESS / script), str(spec)], capture_output=True, text=True, timeout=1800,
                          env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Every export built and run through both harnesses once: {"cases": {name: case}, "vllm": {name: record},
    "speculators": {name: record}}."""
    if not VLLM_PY or not SPECULATORS_PY:
        pytest.skip("EAGLECTL_VLLM_ORACLE_PY / EAGLECTL_SPECULATORS_PY not set: run scripts/vllm_oracle/run.sh")
    from safetensors.torch import save_file

    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.demo.samples import build_samples
    from eaglectl.enums import ExportFormat
    from eaglectl.errors import EaglectlError
    from eaglectl.export.exporter import export_checkpoint
    from eaglectl.export.plan import build_plan

    work = tmp_path_factory.mktemp("vllm-oracle")
    samples = build_samples(work / "demo").paths
    variant = work / "demo" / "specforge-ids-0-3-5"  # ids that are not an 8-layer target's default
    shutil.copytree(samples["specforge"], variant)
    cfg = json.loads((variant / "config.json").read_text())
    cfg["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": [0, 3, 5]}
    (variant / "config.json").write_text(json.dumps(cfg))
    samples = {**samples, "specforge-ids-0-3-5": variant}
    target = str(samples["target"])
    cases: dict[str, dict] = {}
    for layout in LAYOUTS:
        for fmt in ExportFormat:
            name = f"{layout}/{fmt.value}"
            out = work / "exports" / layout / fmt.value
            try:
                report = export_checkpoint(str(samples[layout]), output=out, fmt=fmt,
                                           verifier=target if fmt is ExportFormat.speculators else None)
            except EaglectlError as exc:
                cases[name] = {"name": name, "refused": str(exc)}
                continue
            ckpt = resolve(samples[layout])
            plan = build_plan(ckpt, fmt=fmt, verifier=target if fmt is ExportFormat.speculators else None)
            reference = {t.name: (plan.generated[t.name] if t.source is None else
                                  ckpt.weights.load(t.source).reshape(t.shape)).contiguous() for t in plan.tensors}
            save_file(reference, str(work / f"{layout}-{fmt.value}.reference.safetensors"))
            cases[name] = {"name": name, "draft": str(report.output), "target": target, "format": fmt.value,
                           "reference": str(work / f"{layout}-{fmt.value}.reference.safetensors"),
                           "parallel_drafting": layout == "p-eagle"}
    runnable = [c for c in cases.values() if "refused" not in c]
    vllm = _run(VLLM_PY, "harness.py", [{k: c[k] for k in ("name", "draft", "target", "parallel_drafting")}
                                        for c in runnable], work)
    spec = _run(SPECULATORS_PY, "speculators_harness.py",
                [{"name": c["name"], "dir": c["draft"], "verifier": target, "reference": c["reference"]}
                 for c in runnable if c["format"] == "speculators"], work)
    result = {"cases": cases, "vllm": {r["name"]: r for r in vllm["records"]},
              "speculators": {r["name"]: r for r in spec["records"]},
              "versions": {k: v for k, v in {**vllm, **spec}.items() if k.endswith("version")}}
    if os.environ.get("EAGLECTL_VLLM_ORACLE_RECORD"):
        Path(os.environ["EAGLECTL_VLLM_ORACLE_RECORD"]).write_text(json.dumps(result, indent=1, default=str))
    return result


NAMES = [f"{layout}/{fmt}" for layout in LAYOUTS for fmt in ("sglang", "speculators")]


@pytest.mark.parametrize("name", NAMES)
def test_vllm_loads_every_export_completely_with_the_trained_capture(oracle, name):
    case = oracle["cases"][name]
    if "refused" in case:
        assert name == "p-eagle/sglang" and "P-EAGLE" in case["refused"]  # SGLang's layout cannot hold it
        return
    rec = oracle["vllm"][name]
    assert not rec["errors"], rec["errors"]
    assert rec["method"] == "eagle3" and rec["model_class"] == "llama_eagle3.Eagle3LlamaForCausalLM"
    shared = {"model.embed_tokens.weight"} - ({"model.embed_tokens.weight"} if rec["has_own_embed_tokens"] else set())
    assert set(rec["never_loaded"]) == shared, rec["never_loaded"]  # everything else loaded (NaN sentinel)
    assert not rec["partially_loaded"] and not rec["values_mismatched"] and rec["values_checked"] >= 14
    assert rec["fc_shape"] == [64, 3 * 64] and rec["num_aux_hidden_states"] == 3
    config = json.loads((Path(case["draft"]) / "config.json").read_text())
    from eaglectl.engines.vllm.loader import trained_capture

    trained = trained_capture(config) or rec["capture_default"]  # no ids recorded: trained on the default
    runner = rec["capture_v1"] if rec["parallel_drafting"] else rec["capture_v2"]
    assert (runner or rec["capture_default"]) == trained
    if case["parallel_drafting"]:
        assert rec["mask_hidden_loaded"] is True


@pytest.mark.parametrize("name", NAMES)
def test_eaglectls_replay_agrees_with_vllm(oracle, name):
    case = oracle["cases"][name]
    if "refused" in case:
        pytest.skip("not exported in this layout")
    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.engines.vllm.loader import expected_parameters, parse_config, simulate_load

    rec = oracle["vllm"][name]
    config = json.loads((Path(case["draft"]) / "config.json").read_text())
    shapes = {n: t.shape for n, t in resolve(case["draft"]).weights.tensors.items()}
    sim = simulate_load(config, shapes, target_vocab=TARGET_VOCAB, target_layers=TARGET_LAYERS,
                        parallel_drafting=case["parallel_drafting"] or None)
    assert sim.ok and not rec["errors"]
    params, _ = expected_parameters(parse_config(config).config, target_vocab=TARGET_VOCAB,
                                    parallel_drafting=case["parallel_drafting"])
    assert set(params) == set(rec["param_shapes"]), set(params) ^ set(rec["param_shapes"])
    for param, spec in params.items():
        rows = sum(s[0] for s in spec.values()) if isinstance(spec, dict) else spec[0]
        assert rec["param_shapes"][param][0] == rows, param
    assert set(rec["never_loaded"]) == set(sim.from_target) | {u.split(" ")[0] for u in sim.uninitialized}
    assert (sim.capture_v2, sim.capture_v1) == (rec["capture_v2"], rec["capture_v1"])
    assert rec["fc_shape"] == [64, sim.fc_width] and rec["norm_before_residual"] == sim.norm_before_residual
    assert sim.architecture in rec["architectures"]


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("/speculators")])
def test_speculators_loads_the_speculators_exports_with_the_source_tensors(oracle, name):
    rec = oracle["speculators"][name]
    assert not rec["errors"], rec
    kind = "PEagleDraftModel" if name.startswith("p-eagle/") else "Eagle3DraftModel"
    assert rec["model_class"] == kind and rec["norm_before_residual"] is False
    assert rec["missing"] == [] and rec["unexpected"] == [] and rec["shape_mismatch"] == []
    assert rec["nan_left"] == [] and rec["not_equal"] == [] and rec["compared"] >= 14


SPECFORGE_SRC = os.environ.get("EAGLECTL_SPECFORGE_SRC")


@pytest.fixture(scope="module")
def specforge_exports(tmp_path_factory):
    """SpecForge 0.2.0's own `export --to sglang` and eaglectl's export of the same training checkpoints: the demo
    sample, and a run whose aux ids were a run-config override, whose draft config keeps RoPE only in
    rope_parameters and whose embedding was trained (what SpecForge's export loses)."""
    if not SPECULATORS_PY or not SPECFORGE_SRC:
        pytest.skip("EAGLECTL_SPECULATORS_PY / EAGLECTL_SPECFORGE_SRC not set: run scripts/vllm_oracle/run.sh")
    from eaglectl.demo.samples import save_specforge_run
    from eaglectl.export.exporter import export_checkpoint
    from tests.specforge_ckpt import write_run

    work = tmp_path_factory.mktemp("specforge-oracle")
    runs = {"demo": (save_specforge_run(work / "demo"), work / "demo" / "config.json")}
    override = write_run(work / "override", aux_ids=[0, 3, 5], aux_in_run_config=True, rope_parameters_only=True,
                         embed_trainable=True, steps=(50,))
    runs["run-config-ids"] = (override["output"], override["draft_config"])
    cases = [{"name": name, "checkpoint": str(run), "draft_config": str(cfg), "output": str(work / "sf" / name)}
             for name, (run, cfg) in runs.items()]
    spec = work / "cases.json"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "EAGLECTL_SPECFORGE_SRC": SPECFORGE_SRC}
    proc = subprocess.run([SPECULATORS_PY, str(HARNESS / "specforge_harness.py"), str(spec)], capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = {r["name"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])["records"]}
    for name, (run, _cfg) in runs.items():
        export_checkpoint(str(run), output=work / "eaglectl" / name)
    return {name: {"specforge": Path(records[name]["output"]), "eaglectl": work / "eaglectl" / name,
                   "errors": records[name]["errors"]} for name in runs}


@pytest.mark.parametrize("name", ["demo", "run-config-ids"])
def test_export_equals_specforges_own_tensor_for_tensor(specforge_exports, name):
    import torch

    from tests.helpers import read_all

    case = specforge_exports[name]
    assert not case["errors"], case["errors"]
    theirs, ours = read_all(case["specforge"]), read_all(case["eaglectl"])
    assert set(theirs) <= set(ours)
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    extra = set(ours) - set(theirs)
    assert extra == ({"embed_tokens.weight"} if name == "run-config-ids" else set())  # the trained embedding kept


def test_export_config_keeps_what_specforges_loses(specforge_exports):
    case = specforge_exports["run-config-ids"]
    theirs = json.loads((case["specforge"] / "config.json").read_text())
    ours = json.loads((case["eaglectl"] / "config.json").read_text())
    assert "eagle_config" not in theirs and "eagle_aux_hidden_state_layer_ids" not in theirs
    assert ours["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 3, 5]
    assert ours["eagle_aux_hidden_state_layer_ids"] == [1, 4, 6]
    assert theirs["rope_theta"] == ours["rope_theta"] == 500000.0  # both mirror RoPE from rope_parameters
    for key in ("architectures", "hidden_size", "num_hidden_layers", "draft_vocab_size", "vocab_size"):
        assert ours[key] == theirs[key], key
