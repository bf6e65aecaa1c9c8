"""SGLang's Llama EAGLE / EAGLE-3 rules per release, as data, each with the source it was read from.

Read from the released wheels (`pip download --no-deps sglang==X`) of every release from 0.5.9 to
`NEWEST_KNOWN`. A rule holds for an inclusive range of releases; post-releases belong to their base release
(no `.post1` changed a loader). `eaglectl.engines.sglang.loader` replays the loaders from these tables, `inspect` and
`serve` pick the table of a release, and `loader_hashes.json` beside this file records the sha256 of each
release's loader files so that `scripts/check_sglang_releases.py` can tell when a new release changed them.

Sources name the wheel path (`sglang/...`; the repository has it under `python/`), the function and the line
numbers in the named release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from eaglectl.engines.source import Rule, Source

RELEASES = (
    "0.5.9", "0.5.10", "0.5.10.post1", "0.5.11", "0.5.12", "0.5.12.post1", "0.5.13", "0.5.13.post1",
    "0.5.14", "0.5.15", "0.5.15.post1", "0.5.16", "0.5.17", "0.5.18", "0.5.19", "0.5.20", "0.5.21",
    "0.5.22", "0.5.23",
)
OLDEST_SUPPORTED = RELEASES[0]
NEWEST_KNOWN = RELEASES[-1]

E3 = "sglang/srt/models/llama_eagle3.py"
E1 = "sglang/srt/models/llama_eagle.py"
LLAMA = "sglang/srt/models/llama.py"
WORKER_V2 = "sglang/srt/speculative/eagle_worker_v2.py"
SERVER_ARGS = "sglang/srt/server_args.py"
HASHES_FILE = "loader_hashes.json"  # beside this module: sha256 per release of the files the rules come from


# --- release numbers ---------------------------------------------------------------------------------------
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:\.post(\d+))?(?:(a|b|rc|\.dev)\d*)?(?:\.post(\d+))?(?:\+.*)?$")


def release_key(version: str) -> tuple[int, int, int, int] | None:
    """Sortable key of a release string (`0.5.10.post1` after `0.5.10`; `0.5.17rc1` and `.dev` before
    `0.5.17`, so a pre-release gets the rules of the release before it); None when not a version."""
    m = _VERSION.match(version.strip())
    if not m:
        return None
    post = m.group(4) or m.group(6)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), -1 if m.group(5) else int(post or 0))


def checked_release(version: str | None) -> str | None:
    """The release whose rules apply to an installed `version`: itself, the newest known one when it is no release
    number eaglectl can order (a local build's '0.5.15-cu124'; the installed-release check warns so), None (every
    known release) when unknown."""
    return version if version is None or release_key(version) is not None else NEWEST_KNOWN


def _key(version: str) -> tuple[int, int, int, int]:
    key = release_key(version)
    if key is None:
        raise ValueError(f"not an SGLang release number: {version!r}")
    return key


def older(version: str, than: str) -> bool:
    """`version` is an earlier release than `than` (both release numbers: ValueError otherwise)."""
    return _key(version) < _key(than)


def is_newer_than_known(version: str) -> bool:
    return _key(version) > _key(NEWEST_KNOWN) and _key(version)[:3] != _key(NEWEST_KNOWN)[:3]


def is_older_than_supported(version: str) -> bool:
    return _key(version) < _key(OLDEST_SUPPORTED)


def _in(version: str, first: str, last: str) -> bool:
    key = _key(version)
    return _key(first) <= key and (key[:3] <= _key(last)[:3])


def releases_between(first: str, last: str) -> list[str]:
    return [r for r in RELEASES if _in(r, first, last)]


# --- EAGLE-3: LlamaForCausalLMEagle3 -----------------------------------------------------------------------
@dataclass(frozen=True)
class Eagle3Loader:
    """`LlamaForCausalLMEagle3` in one range of releases. Every bool is True where the release supports it."""

    first: str
    last: str
    layer_prefix: Rule[str]  # "midlayer": one `model.midlayer.`; "layers": `model.layers.{i}.`, i < num_hidden_layers
    multi_layer: Rule[bool]  # False: num_hidden_layers must be 1 (ValueError otherwise)
    num_aux_from_config: Rule[bool]  # False: fc takes 3 aux states whatever the config says
    fc_norm: Rule[bool]  # per-aux RMSNorm `model.fc_norm.{i}` when `fc_norm` / `use_aux_norm` is truthy
    norm_before_fc: Rule[bool]  # RMSNorm `model.input_norm` over the concatenation when `norm_before_fc` is truthy
    legacy_renames: Rule[tuple[tuple[str, str], ...]]  # substring replacements on every stored name, in order
    unused_params: Rule[tuple[str, ...]]  # regexes: parameters built but never read by forward
    # True: the RoPE base and scaling come from `rope_parameters` (transformers 5 configs); False: from the
    # top-level `rope_theta` (default 10000) and `rope_scaling` only, as transformers 4 configs carry them
    rope_parameters: Rule[bool]
    norm_output: Rule[bool]  # `norm_output: true` hands the normed hidden state to the next draft step
    # False: an aux count other than 3 fails at CUDA-graph capture (draft-extend buffers sized 3 x target hidden)
    aux_count_with_cuda_graph: Rule[bool]

    def releases(self) -> list[str]:
        return releases_between(self.first, self.last)

    @property
    def label(self) -> str:
        return f"{self.first}–{self.last}" if self.first != self.last else self.first


_LEGACY = (("midlayer", "layers.0"), ("aux_norm_low", "fc_norm.0"), ("aux_norm_mid", "fc_norm.1"),
           ("aux_norm_high", "fc_norm.2"))
_LATER_INPUT_LAYERNORM = (r"^model\.layers\.([1-9]\d*)\.input_layernorm\.weight$",)
EAGLE_INFO = "sglang/srt/speculative/eagle_info.py"
EAGLE_UTILS = "sglang/srt/speculative/eagle_utils.py"


def _one_layer(first: str, last: str, rope_parameters: Rule[bool]) -> Eagle3Loader:
    """0.5.9–0.5.11: one `midlayer`, three aux states, no norms before fc."""
    return Eagle3Loader(
        first=first, last=last,
        layer_prefix=Rule("midlayer", Source("0.5.9", E3, "LlamaModel.__init__ l.141 (0.5.11 l.144)")),
        multi_layer=Rule(False, Source("0.5.9", E3, "LlamaForCausalLMEagle3.__init__ l.198-199 (0.5.11 l.212-213)")),
        num_aux_from_config=Rule(False, Source("0.5.9", E3, "LlamaModel.__init__ l.135-139: fc in = hidden_in * 3")),
        fc_norm=Rule(False, Source("0.5.9", E3, "LlamaModel.__init__ (no fc_norm)")),
        norm_before_fc=Rule(False, Source("0.5.9", E3, "LlamaModel.__init__ (no input_norm)")),
        legacy_renames=Rule((), Source("0.5.9", E3, "load_weights l.229-270 (no renames)")),
        unused_params=Rule((), Source("0.5.9", E3, "LlamaModel.forward (one layer)")),
        rope_parameters=rope_parameters,
        norm_output=Rule(False, Source("0.5.9", E3, "LlamaModel.forward l.178-183: always the pre-norm sum")),
        aux_count_with_cuda_graph=Rule(True, Source("0.5.9", E3, "fc takes 3 aux states: no other count runs")),
    )


_ROPE_THETA_ONLY = Rule(False, Source(
    "0.5.9", LLAMA, "LlamaDecoderLayer.__init__ l.255-256: getattr(config, 'rope_theta', 10000); the pinned "
                    "transformers 4.57.1 LlamaConfig has no rope_parameters"))
_ROPE_PARAMETERS = Rule(True, Source(
    "0.5.10", LLAMA, "LlamaDecoderLayer.__init__ l.255-261: rope_parameters first, else rope_theta "
                     "(0.5.23 l.322-328)"))


def _layers(first: str, last: str, *, norm_before_fc: Rule[bool], aux_graph: Rule[bool],
            where: str) -> Eagle3Loader:
    """0.5.12 on: `layers.N`, the aux count from the config, per-aux norms, legacy names."""
    return Eagle3Loader(
        first=first, last=last,
        layer_prefix=Rule("layers", Source(where, E3, "LlamaModel.__init__: model.layers.{i} (0.5.12 l.180-185)")),
        multi_layer=Rule(True, Source(where, E3, "LlamaForCausalLMEagle3.__init__ (1-layer check removed)")),
        num_aux_from_config=Rule(True, Source(
            "0.5.12", E3, "LlamaModel.__init__ l.153-164: num_aux_hidden_states, else "
                          "len(eagle_config.eagle_aux_hidden_state_layer_ids), else 3 (0.5.23 l.156-161)")),
        fc_norm=Rule(True, Source("0.5.12", E3, "LlamaModel.__init__ l.166-177: fc_norm or use_aux_norm")),
        norm_before_fc=norm_before_fc,
        legacy_renames=Rule(_LEGACY, Source("0.5.12", E3, "load_weights l.306-316: legacy_name_map")),
        unused_params=Rule(_LATER_INPUT_LAYERNORM, Source(
            "0.5.12", E3, "LlamaDecoderLayer.forward: layers >= 1 use hidden_norm(h, residual) only")),
        rope_parameters=_ROPE_PARAMETERS,
        norm_output=Rule(True, Source("0.5.12", E3, "LlamaModel.__init__ l.188, forward l.245-246 "
                                                    "(0.5.23 l.207, l.268)")),
        aux_count_with_cuda_graph=aux_graph,
    )


_NO_INPUT_NORM = Rule(False, Source("0.5.16", E3, "LlamaModel.__init__ (no input_norm)"))
_AUX_GRAPH_3 = Rule(False, Source(
    "0.5.12", EAGLE_INFO, "draft-extend buffer sized 3 x target hidden from the target config (l.891; 0.5.14 "
                          "l.370): another aux count fails at CUDA-graph capture"))
_AUX_GRAPH_ANY = Rule(True, Source("0.5.15", EAGLE_UTILS, "l.407: sized from the draft's aux count"))

EAGLE3_LOADERS = (
    _one_layer("0.5.9", "0.5.9", _ROPE_THETA_ONLY),
    _one_layer("0.5.10", "0.5.11", _ROPE_PARAMETERS),
    _layers("0.5.12", "0.5.14", norm_before_fc=_NO_INPUT_NORM, aux_graph=_AUX_GRAPH_3, where="0.5.12"),
    _layers("0.5.15", "0.5.16", norm_before_fc=_NO_INPUT_NORM, aux_graph=_AUX_GRAPH_ANY, where="0.5.15"),
    _layers("0.5.17", NEWEST_KNOWN, norm_before_fc=Rule(True, Source(
        "0.5.17", E3, "LlamaModel.__init__ l.163-175: eagle_config.get('norm_before_fc', config.norm_before_fc) "
                      "(0.5.23 l.169-182)")), aux_graph=_AUX_GRAPH_ANY, where="0.5.23"),
)


@dataclass(frozen=True)
class Eagle3Common:
    """`LlamaForCausalLMEagle3` rules identical in every known release."""

    stacked: Rule[tuple[tuple[str, str, str | int], ...]]  # (parameter part, stored part, shard)
    lookup: Rule[tuple[str, ...]]  # prefixes tried in order: bare, then `model.`
    unknown_name: Rule[str]
    d2t: Rule[str]  # substring -> hot-token map
    t2d: Rule[str]  # substring -> ignored
    qkv_bias: Rule[bool]
    o_proj_bias_keys: Rule[tuple[str, ...]]  # o_proj.bias exists when any of these config keys is truthy
    fc_bias_key: Rule[str]
    embed_shared: Rule[str]
    lm_head_from_target: Rule[str]
    norm_before_fc_keys: Rule[str]
    draft_vocab_size_read: Rule[str]  # the key is read without a default: absent = AttributeError at start-up
    fc_skipped_when_widths_equal: Rule[str]  # fc (and its norms) run only when aux width != draft width
    aux_ascending: Rule[str]  # the target concatenates aux states in ascending layer order
    rope_default_base: Rule[int]  # the base a config without any RoPE setting gets
    zero_initialised: Rule[tuple[str, ...]]  # regexes: parameters that start at zero, so need no stored tensor
    unread_eagle_config_keys: Rule[tuple[str, ...]]  # ModelOpt's eagle_config switches SGLang never reads
    use_aux_hidden_state: Rule[str]  # eagle_config.use_aux_hidden_state false: the target captures nothing
    logits_normed: Rule[str]  # lm_head always reads the final-normed state (norm_output picks only what is carried)


STACKED = ((".qkv_proj", ".q_proj", "q"), (".qkv_proj", ".k_proj", "k"), (".qkv_proj", ".v_proj", "v"),
           (".gate_up_proj", ".gate_proj", 0), (".gate_up_proj", ".up_proj", 1))

EAGLE3 = Eagle3Common(
    stacked=Rule(STACKED, Source("0.5.9", E3, "load_weights l.231-238: stacked_params_mapping")),
    lookup=Rule(("", "model."), Source("0.5.9", E3, "load_weights l.254, l.264 (0.5.23 l.362, l.372)")),
    unknown_name=Rule("skipped without a message", Source("0.5.9", E3, "load_weights (no else branch)")),
    d2t=Rule("d2t", Source("0.5.9", E3, "load_weights l.242-245: hot_token_id = d2t + arange")),
    t2d=Rule("t2d", Source("0.5.9", E3, "load_weights l.247-248")),
    qkv_bias=Rule(False, Source("0.5.9", E3, "LlamaDecoderLayer.__init__ l.54-62: QKVParallelLinear(bias=False)")),
    o_proj_bias_keys=Rule(("attention_bias", "bias"), Source(
        "0.5.9", LLAMA, "LlamaDecoderLayer.__init__ l.267-282: attention_bias or bias")),
    fc_bias_key=Rule("bias", Source("0.5.9", E3, "LlamaModel.__init__ l.135-139")),
    embed_shared=Rule("unless target_hidden_size is present and differs from hidden_size", Source(
        "0.5.9", LLAMA, "LlamaForCausalLM.set_embed l.763-773 (0.5.23 l.910-916)")),
    lm_head_from_target=Rule("when not tied and draft_vocab_size is null", Source(
        "0.5.9", E3, "LlamaForCausalLMEagle3.__init__ l.206-218; " + WORKER_V2 + ": init_lm_head")),
    norm_before_fc_keys=Rule("eagle_config.norm_before_fc if the key is there, else norm_before_fc", Source(
        "0.5.17", E3, "LlamaModel.__init__ l.163-175")),
    draft_vocab_size_read=Rule("config.draft_vocab_size (tied: config_.draft_vocab_size)", Source(
        "0.5.9", E3, "LlamaForCausalLMEagle3.__init__ l.210, l.222 (0.5.23 l.306, l.318); transformers' "
                     "PretrainedConfig has no default for it (AttributeError)")),
    fc_skipped_when_widths_equal=Rule("if hidden_states.shape[-1] != embeds.shape[-1]", Source(
        "0.5.9", E3, "LlamaModel.forward l.162 (0.5.23 l.238): fc, fc_norm and input_norm run only then")),
    aux_ascending=Rule("layers_to_capture in layer order", Source(
        "0.5.9", LLAMA, "LlamaModel.forward l.381-383: aux_hidden_states appended as the layer loop reaches them")),
    rope_default_base=Rule(10000, Source("0.5.9", LLAMA, "LlamaDecoderLayer.__init__ l.255: "
                                                         "getattr(config, 'rope_theta', 10000)")),
    zero_initialised=Rule((r"\.o_proj\.bias$",), Source(
        "0.5.9", "sglang/srt/layers/linear.py", "RowParallelLinear.__init__ l.1356: bias = torch.zeros "
                                                "(0.5.23 l.1638)")),
    unread_eagle_config_keys=Rule(("use_input_layernorm_in_first_layer", "use_last_layernorm",
                                   "use_mtp_layernorm", "parallel_draft_step", "num_eagle_features"),
                                  Source("0.5.9", E3, "not read anywhere in sglang/ (0.5.9-0.5.23): the embedding "
                                                      "and final norms always apply")),
    use_aux_hidden_state=Rule("if eagle_config.get('use_aux_hidden_state', True): (null and 0 are false)", Source(
        "0.5.9", "sglang/srt/model_executor/model_runner.py", "ModelRunner.__init__ l.360-361, l.621-624 (0.5.23 "
                 "model_runner_components/spec_aux_hidden_state.py l.188-190)")),
    logits_normed=Rule("the final norm before lm_head, always", Source(
        "0.5.9", E3, "LlamaModel.forward l.178-183: the logits from norm(h, residual) (0.5.23 l.263-269)")),
)


# Both draft classes build their MLP from llama.py's LlamaMLP: a stored gate/up/down bias is loaded nowhere (the
# stacked gate/up names are skipped as "extra bias", down_proj.bias has no parameter), without a message.
MLP_BIAS = Rule(False, Source("0.5.9", LLAMA, "LlamaMLP.__init__ l.78-95: gate_up_proj and down_proj bias=False "
                                              "(every release)"))


# --- EAGLE-1: LlamaForCausalLMEagle (unchanged in every known release) -------------------------------------
@dataclass(frozen=True)
class EagleLoader:
    first: str
    last: str
    dropped: Rule[str]  # names containing this are dropped by design
    prepend: Rule[str]  # prepended to every other name
    skipped: Rule[tuple[str, ...]]  # substrings LlamaForCausalLM.load_weights skips without a message
    unknown_name: Rule[str]
    layer0_input_layernorm: Rule[bool]
    fc_bias: Rule[bool]
    attention_bias_keys: Rule[tuple[str, ...]]  # qkv and o bias when any is truthy
    final_norm: Rule[bool]
    zero_initialised: Rule[tuple[str, ...]]  # regexes: parameters that start at zero, so need no stored tensor

    @property
    def label(self) -> str:
        return f"{self.first}–{self.last}" if self.first != self.last else self.first


EAGLE_LOADERS = (
    EagleLoader(
        first="0.5.9", last=NEWEST_KNOWN,
        dropped=Rule("lm_head", Source("0.5.9", E1, "LlamaForCausalLMEagle.load_weights l.142-146")),
        prepend=Rule("model.", Source("0.5.9", E1, "LlamaForCausalLMEagle.load_weights l.142-146")),
        skipped=Rule(("rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached", "projector"),
                     Source("0.5.9", LLAMA, "LlamaForCausalLM.load_weights l.603-675")),
        unknown_name=Rule("warning 'Parameter ... not found in params_dict'", Source(
            "0.5.9", LLAMA, "LlamaForCausalLM.load_weights (else branch); 0.5.17+ ValueError with "
                            "SGLANG_ENABLE_WEIGHT_LOADER_V2=1")),
        layer0_input_layernorm=Rule(False, Source("0.5.9", E1, "LlamaDecoderLayer.__init__ l.51-53")),
        fc_bias=Rule(True, Source("0.5.9", E1, "LlamaModel.__init__ l.82: nn.Linear(2H, H)")),
        attention_bias_keys=Rule(("attention_bias", "bias"), Source(
            "0.5.9", LLAMA, "LlamaDecoderLayer.__init__ l.267-282")),
        final_norm=Rule(False, Source("0.5.9", E1, "LlamaModel (no norm)")),
        zero_initialised=Rule((r"\.o_proj\.bias$",), Source(
            "0.5.9", "sglang/srt/layers/linear.py", "RowParallelLinear.__init__ l.1356: bias = torch.zeros, as for "
                                                    "EAGLE-3 (0.5.23 l.1638); q/k/v biases start as torch.empty")),
    ),
)


# --- the draft config class: chosen by model_type, with that class's defaults -----------------------------------
# transformers fills a key the draft's config.json lacks with the default of the class its model_type picks
# (AutoConfig), not Llama's: the shapes SGLang builds follow. Read from transformers 4.57.1 (0.5.9's pin) and 5.12.1
# (0.5.15's) by instantiating each class; llama_eagle3.py reads intermediate_size_mlp for llama4_text.
# rope_theta: the base a config without one gets (Llama4TextConfig's, not SGLang's 10000: a transformers-5 config
# with only rope_parameters runs on 0.5.9 with it); max_position_embeddings: what the context length is derived from
# when the config names no context key (LlamaConfig's 2048 is SGLang's fallback too).
MODEL_TYPE_DEFAULTS = Rule(
    {"qwen2": {"num_key_value_heads": 32, "max_position_embeddings": 32768},
     "qwen3": {"head_dim": 128, "num_key_value_heads": 32, "max_position_embeddings": 32768},
     "qwen3_moe": {"num_key_value_heads": 4, "max_position_embeddings": 32768},
     "llama4_text": {"head_dim": 128, "num_key_value_heads": 8, "intermediate_size_mlp": 16384,
                     "rope_theta": 500000, "max_position_embeddings": 131072}},
    Source("0.5.9", E3, "LlamaDecoderLayer.__init__ l.64: intermediate_size_mlp for llama4_text; llama.py "
                        "LlamaAttention l.152: getattr(config, 'head_dim', hidden // heads); the config class from "
                        "AutoConfig by model_type (hf_transformers_utils.get_config)"))


# --- server flags that reach the draft too ----------------------------------------------------------------------
MODEL_CONFIG = "sglang/srt/configs/model_config.py"


@dataclass(frozen=True)
class DraftInheritedFlag:
    """A launch flag meant for the target that SGLang applies to the draft as well."""

    flag: str
    unless: str | None  # the flag that keeps the draft out of it, if there is one
    effect: Rule[str]


DRAFT_INHERITED_FLAGS = (
    DraftInheritedFlag("--quantization", "--speculative-draft-model-quantization", Rule(
        "the draft is quantised the same way: fp8 re-quantises the bf16 head online, awq / gptq fail at start-up "
        "(the head holds no such weights)",
        Source("0.5.9", MODEL_CONFIG, "ModelConfig.from_server_args l.241-245: speculative_draft_model_quantization "
                                      "if is_draft_model; server_args.py l.882-885: it defaults to --quantization "
                                      "('unquant': none)"))),
    DraftInheritedFlag("--json-model-override-args", None, Rule(
        "the overrides are applied to the draft's config too (a YaRN rope_scaling for the target gives the draft "
        "YaRN; a max_position_embeddings changes the draft's context)",
        Source("0.5.9", MODEL_CONFIG, "ModelConfig.from_server_args l.255: model_override_args for the draft as for "
                                      "the target (0.5.23 utils/hf_transformers/config.py l.405-417)"))),
)


# SGLang flags that are a prefix of a DRAFT_INHERITED_FLAGS flag but name another option when given whole (argparse
# takes an exact name before trying abbreviations): the alias of --speculative-draft-model-path.
EXACT_PREFIX_FLAGS = Rule(("--speculative-draft-model",), Source(
    "0.5.9", SERVER_ARGS, "ServerArgs.add_cli_args: '--speculative-draft-model-path', '--speculative-draft-model'"))


def _names(given: set[str], flag: str) -> bool:
    """One of the `given` flag names is `flag`, or an abbreviation argparse (allow_abbrev, on in SGLang's parser)
    expands to it. An abbreviation of more than one SGLang flag makes SGLang exit with an error instead."""
    return flag in given or any(len(g) > 2 and g not in EXACT_PREFIX_FLAGS.value and flag.startswith(g)
                                for g in given)


def draft_inherited_flags(args: list[str] | tuple[str, ...]) -> list[str]:
    """What the given SGLang arguments do to the draft without saying so (DRAFT_INHERITED_FLAGS)."""
    given = {a.split("=", 1)[0] for a in args if a.startswith("--") and a != "--"}
    found = []
    for f in DRAFT_INHERITED_FLAGS:
        if _names(given, f.flag) and (f.unless is None or not _names(given, f.unless)):
            keep = f"; pass {f.unless} unquant to keep the head as trained" if f.unless else ""
            found.append(f"{f.flag} reaches the draft: {f.effect.value} ({f.effect.source}){keep}")
    return found


# --- context length ----------------------------------------------------------------------------------------
CONTEXT_LENGTH_KEYS = Rule(
    ("max_sequence_length", "seq_length", "max_seq_len", "model_max_length", "max_position_embeddings"),
    Source("0.5.9", "sglang/srt/utils/hf_transformers_utils.py",
           "get_context_length l.444-470: the first key set, times rope_scaling's factor unless it has "
           "original_max_position_embeddings or is llama3; 2048 when none (0.5.23 utils/hf_transformers/common.py "
           "l.668-694)"))


# RoPE scalings that size their frequencies from the pre-scaling context: SGLang's get_rope reads
# rope_scaling["original_max_position_embeddings"] without a default for them. transformers 5 (SGLang 0.5.10+) fills
# it from max_position_embeddings for llama3 / yarn / longrope, so get_context_length then never multiplies by the
# factor; transformers 4.57.1 (0.5.9) leaves it out and the draft fails to start.
ROPE_NEEDS_ORIGINAL = Rule(
    ("llama3", "yarn", "longrope", "deepseek_yarn"),
    Source("0.5.9", "sglang/srt/layers/rotary_embedding.py",
           "get_rope l.3418-3566: rope_scaling['original_max_position_embeddings'] (KeyError)"))
ROPE_ORIGINAL_FILLED = Rule(
    ("llama3", "yarn", "longrope"),
    Source("5.3.0", "transformers/modeling_rope_utils.py", "standardize_rope_params l.680-688: "
                                                           "setdefault('original_max_position_embeddings', "
                                                           "max_position_embeddings) (5.19.0 l.812-820)",
           project="transformers"))


# --- which files of a draft directory SGLang reads ----------------------------------------------------------
WEIGHT_UTILS = "sglang/srt/model_loader/weight_utils.py"
WEIGHT_FILES = Rule(
    "every top-level *.safetensors (*.bin / *.pt only when there is none); with model.safetensors.index.json only "
    "the files its weight_map names; consolidated.safetensors beside model.safetensors (and nothing else) is left "
    "out",
    Source("0.5.9", WEIGHT_UTILS, "filter_duplicate_safetensors_files l.578-604 (0.5.23 l.757-800); "
                                  "model_loader/loader.py DefaultModelLoader._prepare_weights l.441-461"))


def weight_files_read(safetensors: list[str], index_names: set[str] | None) -> list[str]:
    """The safetensors files (names, top level) SGLang loads from a draft directory holding `safetensors`, given
    the file names its index's weight_map names (None: no index), in name order (WEIGHT_FILES)."""
    if index_names is not None:
        return sorted(n for n in safetensors if n in index_names)
    if sorted(safetensors) == ["consolidated.safetensors", "model.safetensors"]:
        return ["model.safetensors"]
    return sorted(safetensors)


# --- launch flags whose spelling changed ---------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchFlags:
    first: str
    last: str
    no_cuda_graph: Rule[tuple[str, ...]]  # what serve's --disable-cuda-graph becomes on SGLang's command line


LAUNCH_FLAGS = (
    LaunchFlags(
        first="0.5.9", last="0.5.13.post1",
        no_cuda_graph=Rule(("--disable-cuda-graph",), Source(
            "0.5.9", SERVER_ARGS, "ServerArgs.add_cli_args l.4490 (0.5.13: l.6519)")),
    ),
    LaunchFlags(  # --disable-cuda-graph stays as a DeprecatedStoreTrueAction that warns, through NEWEST_KNOWN
        first="0.5.14", last=NEWEST_KNOWN,
        no_cuda_graph=Rule(("--disable-decode-cuda-graph", "--disable-prefill-cuda-graph"), Source(
            "0.5.14", SERVER_ARGS, "ServerArgs.disable_{prefill,decode}_cuda_graph l.1959-1966; --disable-cuda-graph "
                                   "deprecated l.6375-6380 (0.5.20+: arg_groups/fields/exec_.py)")),
    ),
)


def launch_flags(version: str | None) -> LaunchFlags:
    """The spelling `version` takes. Unknown or unorderable: the oldest, which every known release accepts
    (with a deprecation warning from 0.5.14)."""
    if version is None or release_key(version) is None or is_older_than_supported(version):
        return LAUNCH_FLAGS[0]
    return _pick(LAUNCH_FLAGS, version)


def no_cuda_graph_flags() -> set[str]:
    """Every spelling of "no CUDA graphs" in any known release (they all set what serve's option sets)."""
    return {f for r in LAUNCH_FLAGS for f in r.no_cuda_graph.value} | {"--cuda-graph-backend-decode",
                                                                        "--cuda-graph-backend-prefill"}


# --- which release's table applies -------------------------------------------------------------------------
def _pick(table, version: str):
    if is_older_than_supported(version):
        raise ValueError(f"SGLang {version} is older than {OLDEST_SUPPORTED}, the oldest release eaglectl knows")
    key = _key(version)
    return [r for r in table if _key(r.first) <= key][-1]  # a newer or pre-release gets the range before it


def eagle3_loader(version: str) -> Eagle3Loader:
    """The EAGLE-3 table for `version`; a release newer than NEWEST_KNOWN gets the newest table."""
    return _pick(EAGLE3_LOADERS, version)


def eagle_loader(version: str) -> EagleLoader:
    return _pick(EAGLE_LOADERS, version)


def representatives() -> list[str]:
    """One release per EAGLE-3 loader range (its first): replaying these covers every known release."""
    return [r.first for r in EAGLE3_LOADERS]


def range_label(version: str) -> str:
    """`first–last` of the loader range holding `version`."""
    return eagle3_loader(version).label


# --- what a head needs: a feature is a bool field of Eagle3Loader --------------------------------------------
FEATURE_FIELDS = tuple(f.name for f in fields(Eagle3Loader) if f.name in
                       ("multi_layer", "num_aux_from_config", "fc_norm", "norm_before_fc", "rope_parameters",
                        "norm_output", "aux_count_with_cuda_graph"))


def first_release_with(features: set[str] | list[str]) -> str | None:
    """The oldest known release whose EAGLE-3 loader supports every feature, provided every later range does
    too (None: no known release does)."""
    ok = [all(getattr(r, f).value for f in features) for r in EAGLE3_LOADERS]
    for i, rng in enumerate(EAGLE3_LOADERS):
        if all(ok[i:]):
            return rng.first
    return None


# --- target side: which hidden states the target captures for the draft (EAGLE-3) ---------------------------
DEEPSEEK_V2 = "sglang/srt/models/deepseek_v2.py"
GPT_OSS = "sglang/srt/models/gpt_oss.py"
QWEN2_MOE = "sglang/srt/models/qwen2_moe.py"
QWEN3_MOE = "sglang/srt/models/qwen3_moe.py"
QWEN3_NEXT = "sglang/srt/models/qwen3_next.py"
QWEN3_VL = "sglang/srt/models/qwen3_vl.py"
QWEN3_5 = "sglang/srt/models/qwen3_5.py"
QWEN3_5_TEXT = "sglang/srt/models/qwen3_5_text.py"
KIMI_K25 = "sglang/srt/models/kimi_k25.py"
MINIMAX_M3 = "sglang/srt/models/minimax_m3.py"
MINIMAX_M3_VL = "sglang/srt/models/minimax_m3_vl.py"
TRANSFORMERS_BACKEND = "sglang/srt/models/transformers.py"
MODEL_RUNNER = "sglang/srt/model_executor/model_runner.py"
CUDA_GRAPH_RUNNER = "sglang/srt/model_executor/cuda_graph_runner.py"


@dataclass(frozen=True)
class CaptureFamily:
    """Targets whose SGLang model class shares one `set_eagle3_layers_to_capture`. SGLang picks the class by
    `architectures` (so they decide first); `model_type` names the same targets for configs that only give that."""

    name: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    source: Source


CAPTURE_FAMILIES = (
    CaptureFamily("llama-like", ("llama", "qwen2", "qwen3", "minimax_m2", "glm4_moe", "llama4", "llama4_text"), (),
                  Source("0.5.23", LLAMA, "set_eagle3_layers_to_capture l.929-940 (qwen2/qwen3/minimax_m2/glm4_moe: "
                                          "the same body; mllama4 delegates)")),
    CaptureFamily("qwen-moe", ("qwen2_moe", "qwen3_moe", "qwen3_next"),
                  ("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM"),
                  Source("0.5.23", QWEN3_MOE, "EntryClass l.1298 (qwen2_moe.py l.1436, qwen3_next.py l.1316); "
                                              "Qwen3MoeModel(Qwen2MoeModel): per-layer capture flags; 0.5.9 "
                                              "layers/communicator.py prepare_attn_and_capture_last_layer_outputs "
                                              "l.386-409: a flagged layer captures the residual entering it")),
    CaptureFamily("deepseek", ("deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2", "glm4_moe_lite"),
                  ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "DeepseekV32ForCausalLM",
                   "Glm4MoeLiteForCausalLM", "GlmMoeDsaForCausalLM", "MistralLarge3ForCausalLM"),
                  Source("0.5.23", DEEPSEEK_V2, "EntryClass l.3595; glm4_moe_lite.py EntryClass l.1084; "
                                                "glm4_moe.py GlmMoeDsaForCausalLM(DeepseekV2ForCausalLM) l.1284; "
                                                "mistral_large_3.py MistralLarge3ForCausalLM(DeepseekV3ForCausalLM)")),
    CaptureFamily("kimi-k2.5", ("kimi_k25",), ("KimiK25ForConditionalGeneration",),
                  Source("0.5.23", KIMI_K25, "EntryClass l.988; set_eagle3_layers_to_capture l.928-939 delegates to "
                                             "language_model, a DeepseekV3ForCausalLM")),
    CaptureFamily("gpt-oss", ("gpt_oss",), ("GptOssForCausalLM",),
                  Source("0.5.23", GPT_OSS, "EntryClass l.1446")),
    CaptureFamily("qwen3-vl", ("qwen3_vl", "qwen3_vl_moe"),
                  ("Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration"),
                  Source("0.5.23", QWEN3_VL, "EntryClass l.1809; qwen3_vl_moe.py "
                                             "Qwen3VLMoeForConditionalGeneration(Qwen3VLForConditionalGeneration)")),
    CaptureFamily("qwen3.5", ("qwen3_5", "qwen3_5_moe"),
                  ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration"),
                  Source("0.5.23", QWEN3_5, "EntryClass l.3021; both subclass Qwen3VLForConditionalGeneration")),
    CaptureFamily("qwen3.5-text", ("qwen3_5_text", "qwen3_5_moe_text"), ("Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM"),
                  Source("0.5.23", QWEN3_5_TEXT, "EntryClass l.335")),
    CaptureFamily("minimax-m3", ("minimax_m3",), ("MiniMaxM3SparseForCausalLM",),
                  Source("0.5.23", MINIMAX_M3, "EntryClass l.2274")),
    CaptureFamily("minimax-m3-vl", ("minimax_m3_vl",), ("MiniMaxM3SparseForConditionalGeneration",),
                  Source("0.5.23", MINIMAX_M3_VL, "EntryClass l.479; configs/minimax_vl.py MiniMaxM3VLConfig "
                                                  "model_type l.61 (its text_config says minimax_m2)")),
)
CAPTURE_FALLBACK_FAMILY = "llama-like"  # any other target: llama.py's rule, the one most model classes copy


@dataclass(frozen=True)
class CaptureRule:
    """How a target family turns `eagle_config.eagle_aux_hidden_state_layer_ids` into captured positions.

    A captured position k is the hidden state entering layer k (the output of layer k-1).
    convention: "plus_one" (k = id + 1), "plus_one_if_first_is_1" (+1 only when ids[0] == 1, else as given),
    "as_is_if_max_is_num_layers" (as given when max(ids) == num_layers, else +1), "none" (`failure` says why).
    captures_final: the layer loop also records position num_layers (the last layer's output, before the final
    norm); otherwise only positions 0 .. num_layers-1 are ever recorded.
    failure: the target fails with any EAGLE-3 draft in these releases (no method, or no state recorded).
    sticky: layers are marked by flags that are set and never cleared, so a default capture set before the draft's
    ids (CAPTURE_ORDER) stays.
    default_shift: added to CAPTURE_DEFAULT's positions when the draft gives no ids."""

    family: str
    model_types: tuple[str, ...]
    first: str
    last: str
    convention: str
    source: Source
    captures_final: Rule[bool] | None = None  # None: False, the loop stops at num_layers - 1
    failure: Rule[str] | None = None
    sticky: Rule[bool] | None = None
    default_shift: Rule[int] | None = None


def _types(family: str) -> tuple[str, ...]:
    return next(f.model_types for f in CAPTURE_FAMILIES if f.name == family)


def _no_class(family: str, cls: str, file: str, first: str, last: str) -> CaptureRule:
    """Releases before the target's model class: at most the Transformers fallback runs the target, and its class
    has no capture for a draft (read in every release 0.5.9-0.5.23)."""
    return CaptureRule(family, _types(family), OLDEST_SUPPORTED, last, "none", Source(last, file, "absent"),
                       failure=Rule(f"no SGLang model class for {cls} before {first} ({file.rsplit('/', 1)[-1]}); the "
                                    f"Transformers fallback has no set_eagle3_layers_to_capture",
                                    Source(_base(last), TRANSFORMERS_BACKEND, "TransformersForCausalLM (no such "
                                                                              "method); " + file + " absent")))


def _base(release: str) -> str:
    return release.split(".post")[0]


_NO_CAPTURE = ("so no aux state is recorded and forward unpacks the bare hidden states as (hidden, aux): the target "
               "fails at its first forward (CUDA-graph capture at start-up, else the first request)")
_M3_FINAL = Rule(True, Source("0.5.23", MINIMAX_M3, "MiniMaxM3Model.forward l.1955-1965: final_norm captures the "
                                                    "last residual when end_layer is in layers_to_capture"))
_M3_VL_DEFAULT = Rule(1, Source("0.5.18", MINIMAX_M3_VL, "set_eagle3_layers_to_capture l.221-224: no ids -> "
                                                         "[2, L//2, L-3] + 1, L = text_config.num_hidden_layers "
                                                         "(0.5.23 l.260-263)"))

CAPTURE_RULES = (
    CaptureRule("llama-like", _types("llama-like"), "0.5.9", NEWEST_KNOWN, "plus_one",
                Source("0.5.23", LLAMA, "set_eagle3_layers_to_capture l.929-940 (qwen2/qwen3/"
                                        "minimax_m2/glm4_moe: the same body)")),
    CaptureRule("qwen-moe", _types("qwen-moe"), "0.5.9", NEWEST_KNOWN, "plus_one",
                Source("0.5.23", QWEN3_MOE, "Qwen3MoeForCausalLM.set_eagle3_layers_to_capture l.1128-1143 "
                                            "(qwen2_moe.py l.1418-1433; qwen3_next.py l.1286-1301; 0.5.9 qwen3_moe.py "
                                            "l.1009-1024)"),
                sticky=Rule(True, Source(
                    "0.5.9", QWEN2_MOE, "Qwen2MoeModel.set_eagle3_layers_to_capture l.606-609 sets "
                                        "_is_layer_to_capture and never clears it, forward l.657 (qwen3_next.py "
                                        "l.849-852, l.884; 0.5.23 qwen2_moe.py l.1153-1156, l.1201)"))),
    CaptureRule("deepseek", _types("deepseek"), "0.5.9", "0.5.12", "plus_one",
                Source("0.5.12", DEEPSEEK_V2, "set_eagle3_layers_to_capture l.2529")),
    CaptureRule("deepseek", _types("deepseek"), "0.5.13", NEWEST_KNOWN, "plus_one_if_first_is_1",
                Source("0.5.13", DEEPSEEK_V2, "set_eagle3_layers_to_capture l.2740-2755 "
                                              "(glm4_moe_lite.py l.1022-1037)")),
    CaptureRule("kimi-k2.5", _types("kimi-k2.5"), "0.5.9", "0.5.9", "none",
                Source("0.5.9", KIMI_K25, "KimiK25ForConditionalGeneration l.648-775"),
                failure=Rule("KimiK25ForConditionalGeneration has no set_eagle3_layers_to_capture: AttributeError at "
                             "start-up", Source("0.5.9", KIMI_K25, "KimiK25ForConditionalGeneration l.648-775 (no such "
                                                                   "method); model_runner.py l.621-624 calls it"))),
    CaptureRule("kimi-k2.5", _types("kimi-k2.5"), "0.5.10", "0.5.12", "plus_one",
                Source("0.5.10", KIMI_K25, "set_eagle3_layers_to_capture l.841-850 delegates to DeepseekV3ForCausalLM "
                                           "(deepseek_v2.py 0.5.12 l.2529)")),
    CaptureRule("kimi-k2.5", _types("kimi-k2.5"), "0.5.13", NEWEST_KNOWN, "plus_one_if_first_is_1",
                Source("0.5.13", KIMI_K25, "set_eagle3_layers_to_capture l.834-845 delegates to DeepseekV3ForCausalLM "
                                           "(deepseek_v2.py l.2740-2755)")),
    CaptureRule("gpt-oss", _types("gpt-oss"), "0.5.9", "0.5.16", "plus_one",
                Source("0.5.16", GPT_OSS, "set_eagle3_layers_to_capture l.1284-1296")),
    CaptureRule("gpt-oss", _types("gpt-oss"), "0.5.17", NEWEST_KNOWN, "as_is_if_max_is_num_layers",
                Source("0.5.17", GPT_OSS, "set_eagle3_layers_to_capture l.1328-1343"),
                captures_final=Rule(True, Source("0.5.17", GPT_OSS, "GptOssModel.forward l.723-741: "
                                                                    "`if i + 1 in self.layers_to_capture`"))),
    CaptureRule("qwen3-vl", _types("qwen3-vl"), "0.5.9", "0.5.10.post1", "none",
                Source("0.5.9", QWEN3_VL, "Qwen3VLForConditionalGeneration l.757-1130"),
                failure=Rule("Qwen3VLForConditionalGeneration has no set_eagle3_layers_to_capture: AttributeError at "
                             "start-up", Source("0.5.9", QWEN3_VL, "Qwen3VLForConditionalGeneration l.757-1130 (0.5.10 "
                                                                   "l.1051-1347): no such method"))),
    CaptureRule("qwen3-vl", _types("qwen3-vl"), "0.5.11", NEWEST_KNOWN, "plus_one",
                Source("0.5.11", QWEN3_VL, "set_eagle3_layers_to_capture l.1398-1409; Qwen3LLMModel.forward l.1022 "
                                           "`layer_idx in self.layers_to_capture` (0.5.23 l.1777-1795, l.1236)")),
    CaptureRule("qwen3.5", _types("qwen3.5"), "0.5.9", "0.5.10.post1", "none",
                Source("0.5.9", QWEN3_5, "Qwen3_5(Moe)ForConditionalGeneration l.1023, l.1114"),
                failure=Rule("Qwen3_5(Moe)ForConditionalGeneration has no set_eagle3_layers_to_capture (nor has "
                             "Qwen3-VL's class it extends): AttributeError at start-up",
                             Source("0.5.9", QWEN3_5, "Qwen3_5ForConditionalGeneration(Qwen3VLForConditional"
                                                      "Generation) l.1023, Qwen3_5MoeForConditionalGeneration l.1114; "
                                                      "qwen3_vl.py l.757-1130: no such method"))),
    CaptureRule("qwen3.5", _types("qwen3.5"), "0.5.11", "0.5.21", "none",
                Source("0.5.11", QWEN3_VL, "set_eagle3_layers_to_capture l.1398-1409 (inherited)"),
                failure=Rule("it inherits Qwen3-VL's set_eagle3_layers_to_capture, which sets only "
                             "model.layers_to_capture, while the Qwen3.5 text model captures only at layers flagged "
                             f"_is_layer_to_capture (set by set_dflash_layers_to_capture alone), {_NO_CAPTURE}",
                             Source("0.5.11", QWEN3_VL, "set_eagle3_layers_to_capture l.1398-1409, forward "
                                                        "l.1283-1284; qwen3_5.py Qwen3_5ForCausalLM.forward l.1114, "
                                                        "set_dflash_layers_to_capture l.1065-1068 (0.5.21 qwen3_vl.py "
                                                        "l.1766-1777, l.1652-1653; qwen3_5.py l.1768-1771, l.1826)"))),
    CaptureRule("qwen3.5", _types("qwen3.5"), "0.5.22", NEWEST_KNOWN, "plus_one",
                Source("0.5.22", QWEN3_VL, "set_eagle3_layers_to_capture l.1778-1796 calls the text model's, which "
                                           "sets the flags: qwen3_5.py l.1837-1840 (0.5.23 qwen3_vl.py l.1777-1795, "
                                           "qwen3_5.py l.1894-1897)")),
    _no_class("qwen3.5-text", "Qwen3_5ForCausalLM", QWEN3_5_TEXT, "0.5.17", "0.5.16"),
    CaptureRule("qwen3.5-text", _types("qwen3.5-text"), "0.5.17", "0.5.21", "none",
                Source("0.5.17", QWEN3_5_TEXT, "Qwen3_5ForCausalLM l.40-172"),
                failure=Rule("Qwen3_5(Moe)ForCausalLM has no set_eagle3_layers_to_capture: AttributeError at start-up",
                             Source("0.5.17", QWEN3_5_TEXT, "Qwen3_5ForCausalLM l.40-172, EntryClass l.208 (0.5.21 "
                                                            "l.40-221): no such method"))),
    CaptureRule("qwen3.5-text", _types("qwen3.5-text"), "0.5.22", NEWEST_KNOWN, "plus_one",
                Source("0.5.22", QWEN3_5_TEXT, "set_eagle3_layers_to_capture l.130-139 (0.5.23 l.150-159)")),
    _no_class("minimax-m3", "MiniMaxM3SparseForCausalLM", MINIMAX_M3, "0.5.16", "0.5.15.post1"),
    CaptureRule("minimax-m3", _types("minimax-m3"), "0.5.16", "0.5.17", "none",
                Source("0.5.16", MINIMAX_M3, "set_eagle3_layers_to_capture l.1491-1504"),
                failure=Rule("set_eagle3_layers_to_capture sets only model.layers_to_capture, while MiniMaxM3Model "
                             f"captures only at layers flagged _is_layer_to_capture (never set), {_NO_CAPTURE}",
                             Source("0.5.16", MINIMAX_M3, "set_eagle3_layers_to_capture l.1491-1504, "
                                                          "MiniMaxM3Model.forward l.1398, forward l.1523-1524 (0.5.17 "
                                                          "l.1511-1524, l.1401, l.1543-1544)"))),
    CaptureRule("minimax-m3", _types("minimax-m3"), "0.5.18", "0.5.22", "plus_one",
                Source("0.5.18", MINIMAX_M3, "set_eagle3_layers_to_capture l.1616-1635 sets the flags (0.5.22 "
                                             "l.1824-1843)")),
    CaptureRule("minimax-m3", _types("minimax-m3"), "0.5.23", NEWEST_KNOWN, "plus_one",
                Source("0.5.23", MINIMAX_M3, "set_eagle3_layers_to_capture l.2056-2075"), captures_final=_M3_FINAL),
    _no_class("minimax-m3-vl", "MiniMaxM3SparseForConditionalGeneration", MINIMAX_M3_VL, "0.5.16", "0.5.15.post1"),
    CaptureRule("minimax-m3-vl", _types("minimax-m3-vl"), "0.5.16", "0.5.17", "none",
                Source("0.5.16", MINIMAX_M3_VL, "MiniMaxM3SparseForConditionalGeneration l.56-371"),
                failure=Rule("MiniMaxM3SparseForConditionalGeneration has no set_eagle3_layers_to_capture: "
                             "AttributeError at start-up",
                             Source("0.5.16", MINIMAX_M3_VL, "MiniMaxM3SparseForConditionalGeneration l.56-371 (0.5.17 "
                                                             "l.57-389): no such method"))),
    CaptureRule("minimax-m3-vl", _types("minimax-m3-vl"), "0.5.18", "0.5.22", "plus_one",
                Source("0.5.18", MINIMAX_M3_VL, "set_eagle3_layers_to_capture l.207-231, on MiniMaxM3Model"),
                default_shift=_M3_VL_DEFAULT),
    CaptureRule("minimax-m3-vl", _types("minimax-m3-vl"), "0.5.23", NEWEST_KNOWN, "plus_one",
                Source("0.5.23", MINIMAX_M3_VL, "set_eagle3_layers_to_capture l.246-270, on MiniMaxM3Model"),
                captures_final=_M3_FINAL, default_shift=_M3_VL_DEFAULT),
)
CAPTURE_DEFAULT = Rule("[2, L // 2, L - 3] as given (no +1) when the draft has no eagle_config ids",
                       Source("0.5.9", LLAMA, "set_eagle3_layers_to_capture l.778-790"))


@dataclass(frozen=True)
class CaptureOrder:
    """When the target is told the draft's ids, against CUDA-graph capture. `default_first`: what sets the default
    capture before the ids (CUDA graphs recorded then keep the default layers, and a sticky family's flags stay);
    None: the ids are set once, before graph capture."""

    first: str
    last: str
    source: Source
    default_first: Rule[str] | None = None


CAPTURE_ORDER = (
    CaptureOrder("0.5.9", "0.5.10.post1", Source("0.5.9", MODEL_RUNNER, "initialize l.608-624: the draft's ids after "
                                                                        "init_device_graphs (0.5.10 l.654-670)"),
                 default_first=Rule(
                     "CUDA-graph capture sets the default capture first and records the graphs with it (so does "
                     "FlashInfer autotune, for --moe-runner-backend flashinfer_trtllm / flashinfer_mxfp4)",
                     Source("0.5.9", CUDA_GRAPH_RUNNER, "CudaGraphRunner.__init__ l.360-365; model_runner.py "
                                                        "_dummy_run l.1905-1906 (0.5.10: l.643-648; l.2157-2158)"))),
    CaptureOrder("0.5.11", NEWEST_KNOWN, Source("0.5.11", MODEL_RUNNER, "init_aux_hidden_state_capture l.814-823, "
                                                                        "called l.764 before the graphs (0.5.16+: "
                                                                        "attention_backend_setup.py)")),
)


def capture_order(version: str) -> CaptureOrder:
    return _pick(CAPTURE_ORDER, version)


def capture_rules_of(family: str) -> list[CaptureRule]:
    return [r for r in CAPTURE_RULES if r.family == family]


def capture_family(model_type: str | None, architectures: list[str] | tuple[str, ...] | None) -> str:
    """The CAPTURE_FAMILIES name of a target, from its `architectures` (SGLang picks the model class by them) and
    else its (text) config's `model_type`."""
    archs = set(architectures or ())
    named = [f.name for f in CAPTURE_FAMILIES if archs & set(f.architectures)]
    typed = [f.name for f in CAPTURE_FAMILIES if model_type in f.model_types and f.name != CAPTURE_FALLBACK_FAMILY]
    return (named or typed or [CAPTURE_FALLBACK_FAMILY])[0]


def capture_rule(family: str, version: str = NEWEST_KNOWN) -> CaptureRule:
    """The rule `family` follows in `version` (a newer or pre-release gets the range before it)."""
    return _pick(capture_rules_of(family), version)


def capture_starts(family: str | None = None) -> list[str]:
    """Every release where `family`'s capture rule (None: any family's) or the capture order changes, oldest
    first."""
    held = [r for r in CAPTURE_RULES if family is None or r.family == family]
    return sorted({r.first for r in held} | {o.first for o in CAPTURE_ORDER}, key=_key)


def default_positions(num_layers: int, rule: CaptureRule | None = None) -> list[int]:
    """CAPTURE_DEFAULT: the positions captured when the draft gives no ids (shifted where the rule says so)."""
    shift = rule.default_shift.value if rule and rule.default_shift else 0
    return [2 + shift, num_layers // 2 + shift, num_layers - 3 + shift]


def captured_positions(rule: CaptureRule, ids: list[int], num_layers: int) -> list[int]:
    """The positions `rule` captures for the draft's aux ids on a `num_layers`-layer target (none for a rule
    under which the target fails)."""
    if rule.failure is not None:
        return []
    if rule.convention == "plus_one_if_first_is_1" and not (ids and ids[0] == 1):
        return list(ids)
    if rule.convention == "as_is_if_max_is_num_layers" and ids and max(ids) == num_layers:
        return list(ids)
    return [i + 1 for i in ids]


def position_reached(rule: CaptureRule, position: int, num_layers: int) -> bool:
    """Whether the layer loop under `rule` ever records `position`."""
    if rule.failure is not None:
        return False
    top = num_layers if rule.captures_final and rule.captures_final.value else num_layers - 1
    return 0 <= position <= top


# --- other EAGLE architectures (not replayed: eaglectl writes the Llama ones) --------------------------------
@dataclass(frozen=True)
class Architecture:
    name: str
    algorithm: str
    first: str
    replayed: bool
    source: Source


ARCHITECTURES = (
    Architecture("LlamaForCausalLMEagle3", "EAGLE3", "0.5.9", True, Source("0.5.9", E3, "EntryClass")),
    Architecture("LlamaForCausalLMEagle", "EAGLE", "0.5.9", True, Source("0.5.9", E1, "EntryClass")),
    Architecture("Qwen2ForCausalLMEagle", "EAGLE", "0.5.9", False,
                 Source("0.5.9", "sglang/srt/models/qwen2_eagle.py", "EntryClass")),
    Architecture("MistralForCausalLMEagle", "EAGLE", "0.5.11", False,
                 Source("0.5.11", "sglang/srt/models/mistral_eagle.py", "EntryClass")),
    Architecture("Eagle3DeepseekV2ForCausalLM", "EAGLE3", "0.5.12", False,
                 Source("0.5.12", "sglang/srt/models/kimi_k25_eagle3.py", "EntryClass (one layer only)")),
)


def architecture(name: str) -> Architecture | None:
    return next((a for a in ARCHITECTURES if a.name == name), None)
