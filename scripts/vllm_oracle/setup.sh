#!/usr/bin/env bash
# Builds the CPU environments of the vLLM / speculators oracle (tests/test_vllm_oracle.py) from the package index
# only; nothing is built from source and no GPU is needed.
#   vLLM:        a venv with torch 2.13.0 (installed first and alone: any other torch pulls gigabytes) and the
#                packages vLLM 0.33's import chain needs to parse configs and build a draft model on CPU; vLLM's own
#                python files come from its wheel (`pip download --no-deps vllm==0.33.0`, 336 MB), unzipped beside it
#                and put first on sys.path by the harness (the wheel's CUDA kernels are never loaded).
#   SpecForge:   its 0.2.0 wheel's python files (`pip download --no-deps specforge==0.2.0`), run in the
#                speculators venv to compare `specforge export --to sglang` with eaglectl's export.
#   speculators: a second venv (speculators 0.9 pins transformers <= 5.19, vLLM 0.33 >= 5.16.1 and its own
#                releases beside), torch 2.13.0 first again, speculators installed --no-deps with what its
#                `speculators/__init__` imports.
# Usage: scripts/vllm_oracle/setup.sh
# Env: EAGLECTL_VLLM_ORACLE_HOME (default ~/.cache/eaglectl-vllm-oracle); PYTHON (default python3, 3.10-3.12).
# Existing environments can stand in: EAGLECTL_VLLM_ORACLE_PY, EAGLECTL_VLLM_SRC, EAGLECTL_SPECULATORS_PY and
# EAGLECTL_SPECFORGE_SRC, when set, are checked and used as they are. Where the package index offers torch 2.13.0 only as a CUDA build, point pip
# at a CPU build first (PIP_EXTRA_INDEX_URL or PIP_FIND_LINKS).
# Writes $EAGLECTL_VLLM_ORACLE_HOME/env.sh (the three variables), which scripts/vllm_oracle/run.sh reads.
set -euo pipefail
HOME_DIR=${EAGLECTL_VLLM_ORACLE_HOME:-$HOME/.cache/eaglectl-vllm-oracle}
PY=${PYTHON:-python3}
VLLM_RELEASE=0.33.0
SPECULATORS_RELEASE=0.9.0
SPECFORGE_RELEASE=0.2.0
mkdir -p "$HOME_DIR"

venv() {  # venv DIR -> a venv with torch 2.13.0 in DIR
  [ -x "$1/bin/python" ] || "$PY" -m venv "$1"
  if ! "$1/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "installing torch==2.13.0 into $1 (a CPU build where the index offers one)" >&2
    "$1/bin/python" -m pip --disable-pip-version-check -q install "torch==2.13.0"
  fi
}

# --- vLLM ---------------------------------------------------------------------------------------------------------
if [ -z "${EAGLECTL_VLLM_ORACLE_PY:-}" ]; then
  venv "$HOME_DIR/vllm-venv"
  EAGLECTL_VLLM_ORACLE_PY=$HOME_DIR/vllm-venv/bin/python
  # what vLLM's modules import at module level on the path to SpeculativeConfig, the registry and llama_eagle3 (its
  # transformers pin is >= 5.16.1, < 5.21); torch==2.13.0 again, so that pip never swaps it
  "$EAGLECTL_VLLM_ORACLE_PY" -m pip --disable-pip-version-check -q install "torch==2.13.0" "transformers==5.20.2" \
    huggingface_hub safetensors pydantic numpy regex cachetools psutil msgspec cloudpickle pyyaml tqdm einops \
    sentencepiece protobuf requests py-cpuinfo blake3 pybase64 cbor2 pyzmq aiohttp openai openai_harmony pillow \
    prometheus_client xgrammar fastapi partial_json_parser llguidance
fi
if [ -z "${EAGLECTL_VLLM_SRC:-}" ]; then
  EAGLECTL_VLLM_SRC=$HOME_DIR/vllm-$VLLM_RELEASE
  if [ ! -f "$EAGLECTL_VLLM_SRC/.complete" ]; then
    whl=$(ls "$HOME_DIR"/wheels/vllm-$VLLM_RELEASE-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$whl" ]; then
      "$EAGLECTL_VLLM_ORACLE_PY" -m pip --disable-pip-version-check -q download --no-deps "vllm==$VLLM_RELEASE" \
        -d "$HOME_DIR/wheels" >/dev/null
      whl=$(ls "$HOME_DIR"/wheels/vllm-$VLLM_RELEASE-*.whl | head -1)
    fi
    rm -rf "$EAGLECTL_VLLM_SRC"
    mkdir -p "$EAGLECTL_VLLM_SRC"
    unzip -q -o "$whl" 'vllm/*' -x '*.so' '*.so.*' -d "$EAGLECTL_VLLM_SRC"  # the python files; no CUDA kernels
    echo "vllm $VLLM_RELEASE python files from $(basename "$whl")" > "$EAGLECTL_VLLM_SRC/.complete"
  fi
fi
# --- speculators --------------------------------------------------------------------------------------------------
if [ -z "${EAGLECTL_SPECULATORS_PY:-}" ]; then
  venv "$HOME_DIR/speculators-venv"
  EAGLECTL_SPECULATORS_PY=$HOME_DIR/speculators-venv/bin/python
  "$EAGLECTL_SPECULATORS_PY" -m pip --disable-pip-version-check -q install "torch==2.13.0" "transformers==5.19.0" \
    pydantic pydantic-settings loguru rich click typer safetensors huggingface-hub openai datasets
  "$EAGLECTL_SPECULATORS_PY" -m pip --disable-pip-version-check -q install --no-deps \
    "speculators==$SPECULATORS_RELEASE" hs-connectors
fi

if [ -z "${EAGLECTL_SPECFORGE_SRC:-}" ]; then
  EAGLECTL_SPECFORGE_SRC=$HOME_DIR/specforge-$SPECFORGE_RELEASE
  if [ ! -f "$EAGLECTL_SPECFORGE_SRC/.complete" ]; then
    "$EAGLECTL_SPECULATORS_PY" -m pip --disable-pip-version-check -q download --no-deps \
      "specforge==$SPECFORGE_RELEASE" -d "$HOME_DIR/wheels" >/dev/null
    rm -rf "$EAGLECTL_SPECFORGE_SRC"
    mkdir -p "$EAGLECTL_SPECFORGE_SRC"
    unzip -q -o "$(ls "$HOME_DIR"/wheels/specforge-$SPECFORGE_RELEASE-*.whl | head -1)" -d "$EAGLECTL_SPECFORGE_SRC"
    echo "specforge $SPECFORGE_RELEASE" > "$EAGLECTL_SPECFORGE_SRC/.complete"
  fi
fi

# --- check, then record -------------------------------------------------------------------------------------------
EAGLECTL_VLLM_SRC=$EAGLECTL_VLLM_SRC PYTHONPATH=$EAGLECTL_VLLM_SRC "$EAGLECTL_VLLM_ORACLE_PY" -c \
  "import vllm, torch; assert vllm.__version__ == '$VLLM_RELEASE', vllm.__version__; print('vLLM', vllm.__version__, 'torch', torch.__version__)" \
  2>/dev/null
"$EAGLECTL_SPECULATORS_PY" -c \
  "import importlib.metadata as m, speculators, torch; v = m.version('speculators'); assert v == '$SPECULATORS_RELEASE', v; print('speculators', v, 'transformers', m.version('transformers'), 'torch', torch.__version__)" \
  2>/dev/null
PYTHONPATH=$EAGLECTL_SPECFORGE_SRC "$EAGLECTL_SPECULATORS_PY" -c \
  "import specforge.export.to_sglang; print('specforge $SPECFORGE_RELEASE (export/to_sglang.py imports)')" 2>/dev/null
cat > "$HOME_DIR/env.sh" <<ENV
export EAGLECTL_VLLM_ORACLE_PY=$EAGLECTL_VLLM_ORACLE_PY
export EAGLECTL_VLLM_SRC=$EAGLECTL_VLLM_SRC
export EAGLECTL_SPECULATORS_PY=$EAGLECTL_SPECULATORS_PY
export EAGLECTL_SPECFORGE_SRC=$EAGLECTL_SPECFORGE_SRC
ENV
cat "$HOME_DIR/env.sh"
