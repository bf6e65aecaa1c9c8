"""vLLM's EAGLE-3 drafter rules, as data, each with the source it was read from.

Read from the released wheel `vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl` (`pip download --no-deps
vllm==0.33.0`); file paths are the wheel's (`vllm/...`), line numbers those of 0.33.0. The replay in `loader.py`
follows these tables; `tests/test_vllm_oracle.py` (optional, marked `vllm_oracle`) runs vLLM's own config parser and
`Eagle3LlamaForCausalLM.load_weights` on CPU and compares.

One release is known. A rule that changes in a later release gets a range, as `engines/sglang/rules.py` has them.
"""

from __future__ import annotations

from eaglectl.engines.source import Rule, Source

RELEASE = "0.33.0"
RELEASES = (RELEASE,)

SPEC_CONFIG = "vllm/config/speculative.py"
VLLM_CONFIG = "vllm/config/vllm.py"
MODEL_CONFIG = "vllm/config/model.py"
E3 = "vllm/model_executor/models/llama_eagle3.py"
LLAMA = "vllm/model_executor/models/llama.py"
MODEL_UTILS = "vllm/model_executor/models/utils.py"
REGISTRY = "vllm/model_executor/models/registry.py"
INTERFACES = "vllm/model_executor/models/interfaces.py"
EAGLE_CONFIG = "vllm/transformers_utils/configs/eagle.py"
SPECULATORS_ALGOS = "vllm/transformers_utils/configs/speculators/algos.py"
SPECULATORS_BASE = "vllm/transformers_utils/configs/speculators/base.py"
HF_CONFIG = "vllm/transformers_utils/config.py"
V2_AUX = "vllm/v1/worker/gpu/spec_decode/eagle/eagle3_utils.py"
V1_RUNNER = "vllm/v1/worker/gpu_model_runner.py"
SHARING = "vllm/v1/worker/gpu/spec_decode/eagle/utils.py"
DEFAULT_LOADER = "vllm/model_executor/model_loader/default_loader.py"
ARG_UTILS = "vllm/engine/arg_utils.py"
CLI_MAIN = "vllm/entrypoints/cli/main.py"
FRONTEND_ARGS = "vllm/entrypoints/common/cli_args.py"


def _src(file: str, where: str) -> Source:
    return Source(RELEASE, file, where, project="vLLM")


# --- method: how vLLM decides what the draft directory is -----------------------------------------------------
METHOD = Rule("eagle3", _src(
    SPEC_CONFIG, "SpeculativeConfig.__post_init__ l.1236-1244, l.1433-1501: an unset method becomes 'draft_model' "
                 "(the head run as a standalone model) unless the path names 'eagle3', and 'eagle-' in the path wins "
                 "('eagle', EAGLE-1): a launch must say method eagle3"))
NUM_SPECULATIVE_TOKENS_REQUIRED = Rule(True, _src(SPEC_CONFIG, "__post_init__ l.1612-1618: required with a model"))
LONGER_CONTEXT = Rule("raised to the target's max_model_len (default / linear / llama3 / ntk / proportional RoPE)",
                      _src(SPEC_CONFIG, "__post_init__ l.1503-1510, l.1807-1850"))

# --- architectures ---------------------------------------------------------------------------------------------
ARCH_RENAME = Rule("kept when it starts or ends with 'Eagle3', else 'Eagle3' + the name", _src(
    EAGLE_CONFIG, "EAGLEConfig.__init__ l.55-64 (method eagle3)"))
# the draft ModelConfig first checks the config's own architecture against the registry
ORIGINAL_ARCH_CHECKED = Rule(True, _src(MODEL_CONFIG, "ModelConfig.__post_init__ l.741: registry.inspect_model_cls"))
LLAMA_EAGLE3_ARCHITECTURES = Rule(
    ("Eagle3LlamaForCausalLM", "LlamaForCausalLMEagle3", "Eagle3MiniMaxM2ForCausalLM", "Eagle3Qwen2_5vlForCausalLM",
     "Eagle3Qwen3vlForCausalLM", "PEagleDraftModel", "PeagleLlamaForCausalLM"),
    _src(REGISTRY, "_SPECULATIVE_DECODING_MODELS l.698-704: llama_eagle3.Eagle3LlamaForCausalLM"))
OTHER_EAGLE3_ARCHITECTURES = Rule(
    {"Eagle3Qwen3ForCausalLM": "qwen3_eagle3", "PeagleQwen3ForCausalLM": "qwen3_eagle3",
     "Eagle3DeepseekV2ForCausalLM": "deepseek_eagle3", "Eagle3DeepseekV3ForCausalLM": "deepseek_eagle3"},
    _src(REGISTRY, "_SPECULATIVE_DECODING_MODELS l.705-713 (not replayed by eaglectl)"))
# names a draft config may carry that the registry has as plain decoders (renamed Eagle3<name> afterwards)
PLAIN_ARCHITECTURES = Rule(("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"),
                           _src(REGISTRY, "_TEXT_GENERATION_MODELS"))
REFUSED_ARCHITECTURES = Rule(("LlamaEagle3DraftModel", "Eagle3DraftModel", "Eagle3Speculator", "PEagleSpeculator"),
                             _src(REGISTRY, "no such entry: 'Model architectures [...] are not supported for now'"))

# --- speculators-format configs --------------------------------------------------------------------------------
SPECULATORS_ROUTE = Rule("a config with speculators_config (and no model_type) is read by SpeculatorsConfig", _src(
    HF_CONFIG, "get_config l.361-366, l.416-421; " + SPECULATORS_BASE + " from_pretrained l.32-63"))
SPECULATORS_ARCH = Rule({"eagle3": {"llama": "Eagle3LlamaForCausalLM", "qwen3": "Eagle3Qwen3ForCausalLM"},
                         "peagle": {"llama": "PeagleLlamaForCausalLM", "qwen3": "PeagleQwen3ForCausalLM"}},
                        _src(SPECULATORS_ALGOS, "update_eagle3 l.39-46, update_peagle l.75-82: by "
                                                "transformer_layer_config.model_type (default llama)"))
SPECULATORS_DEFAULTS = Rule(
    {"eagle3": {"norm_before_residual": True, "norm_before_fc": False, "fc_norm": False, "norm_output": False},
     "peagle": {"norm_before_residual": False, "norm_before_fc": False}},
    _src(SPECULATORS_ALGOS, "update_eagle3 l.33-38 (norm_before_residual defaults to True when absent; speculators' "
                            "own default is False), update_peagle l.71-74"))
SPECULATORS_PEAGLE_MASK_TOKEN = Rule("mask_token_id", _src(
    SPECULATORS_ALGOS, "update_peagle l.83: config_dict['mask_token_id'] (KeyError)"))
SPECULATORS_METHOD = Rule({"eagle3": {}, "peagle": {"parallel_drafting": True}}, _src(
    SPECULATORS_BASE, "build_vllm_speculative_config l.127-137: peagle -> method eagle3 with parallel_drafting"))
SPECULATORS_MODEL_ROUTE = Rule(
    "served as --model DIR: speculators_config.verifier.name_or_path must be a Hub repo id; it replaces --model",
    _src(HF_CONFIG, "maybe_override_with_speculators l.800-876 (verifier check l.860-873)"))

# --- what Eagle3LlamaForCausalLM reads from the draft config ----------------------------------------------------
USE_AUX_HIDDEN_STATE = Rule("eagle_config.use_aux_hidden_state, default True; false builds no fc", _src(
    E3, "LlamaModel.__init__ l.179-183; load_weights l.462-463"))
NORM_BEFORE_FC = Rule("eagle_config.norm_before_fc if the key is there, else norm_before_fc (default False)", _src(
    E3, "LlamaModel.__init__ l.184-188; input_norm l.223-229; load_weights l.464-465"))
NUM_AUX = Rule("num_aux_hidden_states, else len(eagle_config.eagle_aux_hidden_state_layer_ids), else 3 (the "
               "top-level ids are not counted)", _src(E3, "LlamaModel.__init__ l.209-216"))
FC_WIDTH = Rule("target_hidden_size (default hidden_size) x the aux count", _src(E3, "LlamaModel.__init__ l.218-221"))
FC_NORM = Rule("fc_norm: one RMSNorm over target_hidden_size per aux state", _src(E3, "LlamaModel.__init__ l.231-240"))
NORM_BEFORE_RESIDUAL = Rule(False, _src(E3, "LlamaDecoderLayer.__init__ l.101-104: getattr(config, "
                                            "'norm_before_residual', False)"))
NORM_OUTPUT = Rule(False, _src(E3, "LlamaModel.__init__ l.252: the normed hidden state fed back"))
DRAFT_VOCAB_DEFAULT = Rule("vocab_size", _src(E3, "Eagle3LlamaForCausalLM.__init__ l.312-316"))
D2T_PARAMETER = Rule("draft_id_to_target_id (int64 zeros) only when draft_vocab_size != the target's vocab", _src(
    E3, "Eagle3LlamaForCausalLM.__init__ l.337-345"))
QKV_BIAS_KEY = Rule("attention_bias", _src(E3, "LlamaDecoderLayer.__init__ l.85"))
O_PROJ_BIAS_KEYS = Rule(("attention_bias", "bias"), _src(LLAMA, "LlamaDecoderLayer.__init__ l.267-271"))
MLP_BIAS_KEY = Rule("mlp_bias", _src(LLAMA, "LlamaDecoderLayer.__init__ l.305"))
LAYER_INPUT = Rule("layer 0: 2 x hidden (embeddings and hidden state); later layers: hidden", _src(
    E3, "LlamaDecoderLayer.__init__ l.80-82"))
LATER_LAYER_NORM = Rule("layers >= 1 normalise their input with input_layernorm; hidden_norm is built, never read",
                        _src(E3, "LlamaDecoderLayer.forward l.131-138"))
LAYERS_BUILT = Rule("num_hidden_layers layers, whatever the weights hold", _src(E3, "LlamaModel.__init__ l.198-208"))

# --- load_weights: stored name -> parameter --------------------------------------------------------------------
T2D_SKIPPED = Rule("t2d", _src(E3, "Eagle3LlamaForCausalLM.load_weights l.426-427"))
D2T_RENAMED = Rule(("d2t", "draft_id_to_target_id"), _src(E3, "load_weights l.428-430"))
MASK_HIDDEN = Rule("mask_hidden: copied as view(1, -1) with parallel drafting, else skipped with a warning; "
                   "parallel drafting without it is a ValueError", _src(E3, "load_weights l.431-455"))
MODEL_PREFIX = Rule("model.", _src(E3, "load_weights l.443-444: every other name without 'lm_head'"))
DROPPED_WHEN_ABSENT = Rule("embed_tokens (none stored: the target's is shared), fc. (no aux states), input_norm. "
                           "(no norm_before_fc), draft_id_to_target_id (no d2t stored)",
                           _src(E3, "load_weights l.457-465"))
LAYER_RENAME = Rule((("midlayer.", "layers.0."),), _src(E3, "LlamaModel.hf_to_vllm_mapper l.290-299"))
STACKED = Rule(((".q_proj", ".qkv_proj", "q"), (".k_proj", ".qkv_proj", "k"), (".v_proj", ".qkv_proj", "v"),
                (".gate_proj", ".gate_up_proj", 0), (".up_proj", ".gate_up_proj", 1)),
               _src(E3, "LlamaModel.hf_to_vllm_mapper l.292-298"))
UNKNOWN_NAME = Rule("ValueError: There is no module or parameter named ...", _src(
    MODEL_UTILS, "AutoWeightsLoader._load_module l.425-449"))
UNEXPECTED_BIAS = Rule(".bias", _src(MODEL_UTILS, "AutoWeightsLoader.load_weights l.458: unexpected biases ignored"))
SHAPE_CHECKED = Rule("a stored shape other than the parameter's fails the load (AssertionError)", _src(
    MODEL_UTILS, "default_weight_loader; linear weight loaders"))
MISSING_SILENT = Rule("load_weights returns None: parameters nothing loaded keep their initial values, no error",
                      _src(E3, "load_weights l.420-470; " + DEFAULT_LOADER + " l.503-520"))
WEIGHT_FILES = Rule("*.safetensors (index-filtered), else *.bin, else *.pt", _src(
    DEFAULT_LOADER, "DefaultModelLoader._prepare_weights l.147-263"))

# --- sharing with the target ------------------------------------------------------------------------------------
EMBED_SHARED = Rule("the target's embedding when the draft stores none, or stores one equal to it", _src(
    SHARING, "_should_share l.18-34, share embeddings l.45-77"))
LM_HEAD_SHARED = Rule("the target's lm_head when the draft stores none (or one equal to it): right only for a "
                      "full-vocabulary head", _src(SHARING, "l.107-119; " + E3 + " compute_logits l.373-395"))

# --- which target layers are captured ---------------------------------------------------------------------------
CAPTURE_V2 = Rule(
    ("eagle_aux_hidden_state_layer_ids", "dflash_config.target_layer_ids + 1", "dspark_target_layer_ids + 1",
     "target_layer_ids + 1", "dflash_config.layer_ids", "eagle_config.layer_ids"),
    _src(V2_AUX, "get_eagle3_aux_layers_from_config l.113-150 (never eagle_config.eagle_aux_hidden_state_layer_ids)"))
CAPTURE_V1 = Rule(("eagle_aux_hidden_state_layer_ids", "eagle_config.eagle_aux_hidden_state_layer_ids"), _src(
    V1_RUNNER, "GPUModelRunner._get_eagle3_aux_layers_from_config l.5190-5224 (eagle_config's ids taken as they are)"))
CAPTURE_DEFAULT = Rule("(2, L // 2, L - 3)", _src(INTERFACES, "get_eagle3_default_aux_hidden_state_layers "
                                                              "l.1751-1772"))
CAPTURE_NUMBERING = Rule("id k = the input of target layer k (hidden_states[k]): SGLang's id + 1 on Llama-style "
                         "targets", _src(LLAMA, "LlamaModel.forward l.427-441; " + INTERFACES + " l.1640-1650"))
CAPTURE_SORTED = Rule(True, _src(INTERFACES, "l.1616-1617: tuple(sorted(set(layers)))"))
RUNNER = Rule("the V2 model runner unless VLLM_USE_V2_MODEL_RUNNER=0, no Triton, or parallel drafting (V1)", _src(
    VLLM_CONFIG, "l.731-766, l.3053-3089"))

# --- the launch ------------------------------------------------------------------------------------------------
CLI_MODULE = Rule("vllm.entrypoints.cli.main", _src(CLI_MAIN, "main(); `vllm` console script"))
LAUNCH_FLAGS = Rule(
    {"speculative_config": "--speculative-config", "dtype": "--dtype", "tp_size": "--tensor-parallel-size",
     "context_length": "--max-model-len", "mem_fraction_static": "--gpu-memory-utilization",
     "disable_cuda_graph": "--enforce-eager", "skip_tokenizer_init": "--skip-tokenizer-init",
     "trust_remote_code": "--trust-remote-code", "attention_backend": "--attention-backend", "host": "--host",
     "port": "--port"},
    _src(ARG_UTILS, "EngineArgs.add_cli_args l.975-1866; " + FRONTEND_ARGS + " FrontendArgs l.290-295"))
DTYPES = Rule(("auto", "half", "float16", "bfloat16", "float", "float32"), _src(MODEL_CONFIG, "ModelDType l.100"))
CHAIN_ONLY = Rule(1, _src(SPEC_CONFIG, "SpeculativeConfig l.413: num_speculative_tokens, one chain; no tree (topk 1)"))


def default_capture(num_layers: int) -> list[int]:
    """CAPTURE_DEFAULT for a target of `num_layers` layers."""
    return sorted({2, num_layers // 2, num_layers - 3})
