#!/usr/bin/env bash
# Runs the vLLM / speculators oracle (tests/test_vllm_oracle.py, marked vllm_oracle) in the environments
# scripts/vllm_oracle/setup.sh built: vLLM 0.33's config parser and Eagle3LlamaForCausalLM.load_weights, and
# speculators 0.9's from_pretrained, on both exports of every demo layout, compared with eaglectl's replay. CPU only.
# Extra arguments go to pytest (e.g. -k p-eagle). EAGLECTL_VLLM_ORACLE_RECORD=FILE keeps every harness record.
set -euo pipefail
cd "$(dirname "$0")/../.."
HOME_DIR=${EAGLECTL_VLLM_ORACLE_HOME:-$HOME/.cache/eaglectl-vllm-oracle}
if [ -z "${EAGLECTL_VLLM_ORACLE_PY:-}" ]; then
  [ -f "$HOME_DIR/env.sh" ] || { echo "no $HOME_DIR/env.sh: run scripts/vllm_oracle/setup.sh first" >&2; exit 2; }
  # shellcheck disable=SC1091
  source "$HOME_DIR/env.sh"
fi
PYTHON=${PYTHON:-python}
[ -x .venv/bin/python ] && [ "$PYTHON" = python ] && PYTHON=.venv/bin/python
exec "$PYTHON" -m pytest -m vllm_oracle tests/test_vllm_oracle.py -p no:cacheprovider -q "$@"
