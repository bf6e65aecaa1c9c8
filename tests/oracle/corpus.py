"""The oracle's corpus: tiny heads that each exercise one SGLang rule eaglectl encodes, plus eaglectl's own exports.

`build_corpus(root)` writes every head under `root/heads/<name>` and a manifest `root/corpus.json`; each entry
records what eaglectl's verdict is computed from (the head directory, its config.json, the algorithm), so that the
comparison replays exactly what SGLang was given. Three kinds:

  * "export": every demo layout (`eaglectl.demo.samples.build_samples`) exported by
    `eaglectl.export.exporter.export_checkpoint`, and the rule heads whose export changes what SGLang runs
    (`EXPORTED_RULES`): what eaglectl writes must load in SGLang as eaglectl says;
  * "rule": one head per rule of `eaglectl/engines/sglang/rules.py` (tests/synthetic_heads.py `head()`), where
    the replay predicts skipped names, uninitialised parameters, a start-up failure or a changed value;
  * "control": plain heads that every release loads completely.

`ENTRIES` is static (names known without building: the tests are parametrised by it).

    python -m tests.oracle.corpus ROOT     # build, print the manifest
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eaglectl.demo.samples import AUX_IDS, DRAFT_VOCAB, SAMPLE_DIRS, VOCAB, H
from eaglectl.enums import Algorithm
from tests.synthetic_heads import Shapes, eagle1_head, head, write

MANIFEST = "corpus.json"
WIDE_T = 2 * H  # a target twice the draft's width (fc takes 3 x 128)


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "export" | "rule" | "control"
    algorithm: str  # Algorithm value
    rule: str  # what the head exercises, in words
    path: str = ""  # relative to the corpus root once built


Build = Callable[[], tuple[dict[str, Any], Shapes]]


def _without(cfg: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in keys}


def _full_vocab_head(**config: Any) -> tuple[dict[str, Any], Shapes]:
    """A head whose lm_head covers the whole vocab (no token map)."""
    cfg, shapes = head(**config)
    shapes["lm_head.weight"] = (VOCAB, H)
    del shapes["d2t"], shapes["t2d"]
    return cfg, shapes


def _wide_target(**config: Any) -> tuple[dict[str, Any], Shapes]:
    """A head for a target twice as wide: fc takes 3 x 2H, and the head keeps its own embeddings."""
    cfg, shapes = head(embed=True, target_hidden_size=WIDE_T, **config)
    shapes["fc.weight"] = (H, 3 * WIDE_T)
    return cfg, shapes


def _rope_parameters_only() -> tuple[dict[str, Any], Shapes]:
    cfg, shapes = head()
    cfg = _without(cfg, "rope_theta")
    cfg["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    return cfg, shapes


def _no_draft_vocab() -> tuple[dict[str, Any], Shapes]:
    cfg, shapes = head()
    return _without(cfg, "draft_vocab_size"), shapes


def _stray_names() -> tuple[dict[str, Any], Shapes]:
    cfg, shapes = head()
    shapes.update({"extra_projection.weight": (4, H), "midlayer.self_attn.rotary_emb.inv_freq": (8,),
                   "lm_head.bias": (DRAFT_VOCAB,), "model.mask_hidden": (1, 3 * H)})
    return cfg, shapes


def _tied() -> tuple[dict[str, Any], Shapes]:
    cfg, shapes = _full_vocab_head(tie_word_embeddings=True, draft_vocab_size=VOCAB)
    return cfg, shapes


def _null_vocab_wide() -> tuple[dict[str, Any], Shapes]:
    cfg, shapes = _wide_target(draft_vocab_size=None)
    shapes["lm_head.weight"] = (VOCAB, H)
    del shapes["d2t"], shapes["t2d"]
    return cfg, shapes


def _yarn_without_original() -> tuple[dict[str, Any], Shapes]:
    return head(max_position_embeddings=2048, rope_scaling={"rope_type": "yarn", "factor": 4.0})


def _llama4_text_rope_parameters() -> tuple[dict[str, Any], Shapes]:
    cfg, shapes = head(model_type="llama4_text", intermediate_size_mlp=128,
                       rope_parameters={"rope_theta": 10000.0, "rope_type": "default"})
    return _without(cfg, "rope_theta"), shapes


E3 = Algorithm.EAGLE3.value
SYNTHETIC_ALGORITHM = {"eagle1-qkv-biases": Algorithm.EAGLE.value}  # the others are EAGLE-3
SYNTHETIC: dict[str, tuple[str, str, Build]] = {
    # name: (kind, rule, build)
    "control-midlayer": ("control", "SpecForge-style one-layer head (midlayer.*, d2t, t2d)", head),
    "control-embed-stored": ("control", "embed_tokens stored: loaded, then replaced by the target's "
                                        "(target_hidden_size == hidden_size)", lambda: head(embed=True)),
    "control-o-proj-bias": ("control", "bias: true with fc.bias and o_proj.bias stored",
                            lambda: head(fc_bias=True, o_bias=True, bias=True)),
    "control-wide-target": ("control", "target_hidden_size 2H: fc 3 x 2H, the head keeps its own embeddings",
                            _wide_target),
    "layers0-names": ("rule", "layers.0.* names: skipped before 0.5.12 (midlayer), renamed from 0.5.12",
                      lambda: head(names="layers")),
    "two-layers": ("rule", "num_hidden_layers 2: ValueError before 0.5.12; layer 1's input_layernorm unused",
                   lambda: head(layers=2)),
    "fc-norm": ("rule", "fc_norm.N per-aux norms (fc_norm: true): skipped before 0.5.12",
                lambda: head(norms="fc_norm", fc_norm=True)),
    "aux-norm-legacy": ("rule", "legacy aux_norm_low/mid/high names (use_aux_norm: true): renamed from 0.5.12",
                        lambda: head(norms="aux_norm", use_aux_norm=True)),
    "norm-before-fc": ("rule", "norm_before_fc with input_norm.weight: skipped before 0.5.17",
                       lambda: head(input_norm=True, norm_before_fc=True)),
    "norm-before-fc-eagle-config": ("rule", "eagle_config.norm_before_fc (read first from 0.5.17)",
                                    lambda: head(input_norm=True, eagle_config={"norm_before_fc": True,
                                                                                "eagle_aux_hidden_state_layer_ids":
                                                                                AUX_IDS})),
    "four-aux-ids": ("rule", "4 aux states from eagle_config ids: fc built for 3 before 0.5.12",
                     lambda: head(n_aux=4, eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 2, 3, 4]})),
    "four-aux-num-key": ("rule", "4 aux states from num_aux_hidden_states",
                         lambda: head(n_aux=4, num_aux_hidden_states=4)),
    "bias-fc-only": ("rule", "bias: true with only fc.bias stored: o_proj.bias uninitialised (zeros in SGLang)",
                     lambda: head(fc_bias=True, bias=True)),
    "attention-bias-qkv-stored": ("rule", "attention_bias: true with q/k/v biases stored: dropped silently",
                                  lambda: head(o_bias=True, qkv_bias=True, attention_bias=True)),
    "draft-vocab-absent": ("rule", "no draft_vocab_size key: AttributeError at start-up", _no_draft_vocab),
    "draft-vocab-null-full-head": ("rule", "draft_vocab_size null, full-vocab lm_head: loaded, then the target's",
                                   lambda: _full_vocab_head(draft_vocab_size=None)),
    "draft-vocab-null-pruned-head": ("rule", "draft_vocab_size null, pruned lm_head: row-count assert at load",
                                     lambda: head(draft_vocab_size=None)),
    "draft-vocab-null-wide-target": ("rule", "draft_vocab_size null with target_hidden_size 2H: which embeddings",
                                     _null_vocab_wide),
    "rope-parameters-only": ("rule", "RoPE only in rope_parameters: base 10000 on 0.5.9, 500000 from 0.5.10",
                             _rope_parameters_only),
    "unsorted-aux-ids": ("rule", "aux ids [4, 1, 3]: loads; the replay flags the permuted fc input",
                         lambda: head(eagle_config={"eagle_aux_hidden_state_layer_ids": [4, 1, 3]})),
    "target-hidden-null": ("rule", "target_hidden_size null: fc cannot be sized, start-up fails",
                           lambda: head(target_hidden_size=None)),
    "tied-embeddings": ("rule", "tie_word_embeddings: lm_head is embed_tokens; a stored lm_head.weight is skipped",
                        _tied),
    "stray-names": ("rule", "unknown tensor names: skipped without a message", _stray_names),
    "norm-output": ("rule", "norm_output: true: honoured from 0.5.12", lambda: head(norm_output=True)),
    "yarn-no-original": ("rule", "yarn rope_scaling without original_max_position_embeddings: KeyError on 0.5.9 "
                                 "(transformers 5 fills it from 0.5.10)", _yarn_without_original),
    "llama4-text-rope-parameters": ("rule", "llama4_text, RoPE 10000 only in rope_parameters: 0.5.9 takes "
                                            "Llama4TextConfig's 500000", _llama4_text_rope_parameters),
    "eagle1-qkv-biases": ("rule", "EAGLE-1 attention_bias with q/k/v biases, no o_proj.bias: it starts at zero",
                          lambda: eagle1_head(qkv_bias=True, attention_bias=True)),
}

# Every demo layout but these is exported into the corpus.
NOT_EXPORTED = {"target": "the demo's target, not a head",
                "p-eagle": "export refuses P-EAGLE heads (SGLang would serve them as plain EAGLE-3)"}
EXPORTED = tuple(n for n in SAMPLE_DIRS if n not in NOT_EXPORTED)
EXPORT_ALGORITHM = {"nemo-legacy-eagle": Algorithm.EAGLE.value}  # the others are EAGLE-3

# Rule heads whose export must change what SGLang runs: transformers-5 configs (RoPE base only in rope_parameters)
# must keep their base on releases that pin transformers 4 (eaglectl mirrors it as the top-level rope_theta).
EXPORTED_RULES = ("rope-parameters-only", "llama4-text-rope-parameters")
EXPORT_OF_RULE = "exported-"

ENTRIES: tuple[Entry, ...] = (
    *(Entry(f"export-{n}", "export", EXPORT_ALGORITHM.get(n, E3), f"eaglectl export of the {n} demo layout")
      for n in EXPORTED),
    *(Entry(f"{EXPORT_OF_RULE}{n}", "export", E3, f"eaglectl export of the {n} head") for n in EXPORTED_RULES),
    *(Entry(n, kind, SYNTHETIC_ALGORITHM.get(n, E3), rule) for n, (kind, rule, _) in SYNTHETIC.items()),
)


def entry_names() -> list[str]:
    return [e.name for e in ENTRIES]


def build_corpus(root: Path) -> list[Entry]:
    """Write every head under `root/heads` (demo samples under `root/samples`) and the manifest."""
    from eaglectl.demo.samples import build_samples
    from eaglectl.export.exporter import export_checkpoint

    root = Path(root)
    heads = root / "heads"
    samples = build_samples(root / "samples")
    built: list[Entry] = []
    for entry in ENTRIES:
        out = heads / entry.name
        if entry.name.startswith(EXPORT_OF_RULE):
            source = root / "rule-sources" / entry.name.removeprefix(EXPORT_OF_RULE)
            cfg, shapes = SYNTHETIC[source.name][2]()
            write(source, cfg, shapes)
            export_checkpoint(str(source), output=out, force=True)
        elif entry.kind == "export":
            report = export_checkpoint(str(samples.paths[entry.name.removeprefix("export-")]), output=out, force=True)
            if report.algorithm.value != entry.algorithm:
                raise AssertionError(f"{entry.name}: exported as {report.algorithm.value}, corpus says "
                                     f"{entry.algorithm}")
        else:
            cfg, shapes = SYNTHETIC[entry.name][2]()
            write(out, cfg, shapes)
        built.append(Entry(entry.name, entry.kind, entry.algorithm, entry.rule, str(out.relative_to(root))))
    (root / MANIFEST).write_text(json.dumps([asdict(e) for e in built], indent=1) + "\n")
    return built


def load_manifest(root: Path) -> list[Entry]:
    return [Entry(**e) for e in json.loads((Path(root) / MANIFEST).read_text())]


def ensure_corpus(root: Path) -> list[Entry]:
    """The corpus under `root`, built unless a manifest naming every entry is already there."""
    root = Path(root)
    if (root / MANIFEST).exists():
        entries = load_manifest(root)
        if [e.name for e in entries] == entry_names() and all((root / e.path / "config.json").exists()
                                                              for e in entries):
            return entries
    return build_corpus(root)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.oracle.corpus ROOT", file=sys.stderr)
        return 2
    for e in build_corpus(Path(argv[0])):
        print(f"{e.name:32} {e.kind:8} {e.algorithm:7} {e.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
