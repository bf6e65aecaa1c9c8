#!/usr/bin/env bash
# Builds the CPU environment of the SGLang differential oracle (tests/oracle) from the package index only:
#   one venv with torch 2.13.0 (installed first and alone: any other torch pulls gigabytes) and the packages
#   SGLang's import chain needs at module level, plus one directory per SGLang release holding that release's
#   python files (`pip download --no-deps sglang==X`, unzipped) and, beside them, the transformers release it pins
#   (with the tokenizers / huggingface-hub that transformers release accepts) and its xgrammar / apache-tvm-ffi
#   pins. The harness puts the release directory first on sys.path, so each release runs with its own pins over
#   the shared venv.
# Usage: scripts/oracle/setup.sh [RELEASE ...]   (default: 0.5.9 0.5.10 0.5.12 0.5.15 0.5.17 0.5.23, one release per
# rule range of eaglectl/engines/sglang/rules.py, and 0.5.23, the newest known)
# Env: EAGLECTL_ORACLE_HOME (default ~/.cache/eaglectl-oracle); PYTHON (default python3, 3.10-3.12). Where the
# package index offers torch 2.13.0 only as a CUDA build, point pip at a CPU build first (PIP_EXTRA_INDEX_URL or
# PIP_FIND_LINKS); this machine's pip finds torch-2.13.0+cpu in its find-links.
# Prints the EAGLECTL_ORACLE_* variables to export, naming every release set up here so far that runs (this call's
# and earlier ones'); scripts/oracle/run.sh reads the same file ($EAGLECTL_ORACLE_HOME/env.sh).
set -euo pipefail
HOME_DIR=${EAGLECTL_ORACLE_HOME:-$HOME/.cache/eaglectl-oracle}
PY=${PYTHON:-python3}
RELEASES=("$@")
[ ${#RELEASES[@]} -eq 0 ] && RELEASES=(0.5.9 0.5.10 0.5.12 0.5.15 0.5.17 0.5.23)
mkdir -p "$HOME_DIR/wheels" "$HOME_DIR/releases"
VENV=$HOME_DIR/venv
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# torch first, pinned, on its own: a later install then sees it satisfied and never fetches another build.
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "installing torch==2.13.0 (CPU build where the index offers one)" >&2
  "${PIP[@]}" install "torch==2.13.0"
fi
# What SGLang's modules import at module level on the path to the Llama EAGLE models and that cannot be
# stubbed (their module-level code runs). transformers here is only the default; each release directory
# carries its own pin. The torch==2.13.0 constraint keeps pip from swapping torch.
"${PIP[@]}" install "torch==2.13.0" "transformers==5.12.1" "compressed-tensors==0.20.1" "gguf==0.19.0" "dill==0.4.1" \
  openai einops orjson pillow pybase64 psutil pydantic requests msgspec safetensors

requirement() {  # requirement NAME WHEEL -> the version spec WHEEL's METADATA gives NAME (not an extra's)
  unzip -p "$2" '*.dist-info/METADATA' | grep -i "^Requires-Dist: $1[ (=<>~!;]" | grep -v "extra ==" \
    | head -1 | sed -e "s/^Requires-Dist: $1//I" -e 's/;.*//' | tr -d ' ()'
}

entries=()
for rel in "${RELEASES[@]}"; do
  dest=$HOME_DIR/releases/$rel
  if [ ! -f "$dest/.complete" ]; then
    rm -rf "$dest"
    whl=$(ls "$HOME_DIR/wheels"/sglang-"$rel"-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$whl" ]; then
      "${PIP[@]}" download --no-deps "sglang==$rel" -d "$HOME_DIR/wheels" >/dev/null
      whl=$(ls "$HOME_DIR/wheels"/sglang-"$rel"-*.whl | head -1)
    fi
    mkdir -p "$dest"
    unzip -q -o "$whl" 'sglang/*' -d "$dest"
    tf=$(requirement transformers "$whl" | sed 's/^==//')
    tfwhl_dir=$HOME_DIR/wheels/transformers-$tf
    mkdir -p "$tfwhl_dir"
    "${PIP[@]}" download --no-deps "transformers==$tf" -d "$tfwhl_dir" >/dev/null
    tfwhl=$(ls "$tfwhl_dir"/transformers-*.whl | head -1)
    tok=$(requirement tokenizers "$tfwhl")
    hub=$(requirement huggingface-hub "$tfwhl")
    # 0.5.17+ import xgrammar (function-call parsing, via server_args) and apache-tvm-ffi (all-reduce kernels, via
    # dp_attention) at module level: the release's own pins, without their dependencies (xgrammar's pull triton)
    extra=()
    for pkg in xgrammar apache-tvm-ffi; do
      spec=$(requirement "$pkg" "$whl")
      [ -n "$spec" ] && extra+=("$pkg$spec")
    done
    "${PIP[@]}" install --no-deps --target "$dest" "transformers==$tf" "tokenizers$tok" "huggingface-hub$hub" \
      "${extra[@]}"
    # the CPU stand-in for triton that SGLang ships from 0.5.15 on (sglang/_triton_stub.py); kept once for
    # the releases that lack it
    if [ -f "$dest/sglang/_triton_stub.py" ] && [ ! -f "$HOME_DIR/triton_stub.py" ]; then
      cp "$dest/sglang/_triton_stub.py" "$HOME_DIR/triton_stub.py"
    fi
    echo "sglang $rel with transformers $tf${extra:+ (and ${extra[*]})}" > "$dest/.complete"
  fi
  entries+=("$rel=$dest")
done
if [ ! -f "$HOME_DIR/triton_stub.py" ]; then  # none of the chosen releases ships it: take 0.5.15's
  "${PIP[@]}" download --no-deps "sglang==0.5.15" -d "$HOME_DIR/wheels" >/dev/null
  unzip -p "$(ls "$HOME_DIR/wheels"/sglang-0.5.15-*.whl | head -1)" sglang/_triton_stub.py > "$HOME_DIR/triton_stub.py"
fi

# Which releases import and build a head here (a tiny built-in head): a release that cannot run on CPU is left
# out of the variables, with its error.
for e in "${entries[@]}"; do
  rel=${e%%=*}
  dest=${e#*=}
  if (cd "$(dirname "$0")/../.." && "$VENV/bin/python" tests/oracle/harness.py --probe --sglang-src "$dest" \
        --triton-stub "$HOME_DIR/triton_stub.py" > "$HOME_DIR/probe-$rel.json" 2> "$HOME_DIR/probe-$rel.log"); then
    touch "$dest/.probe-ok"
    echo "$rel: runs ($(cat "$dest/.complete"))" >&2
  else
    rm -f "$dest/.probe-ok"
    echo "$rel: does not run on CPU: $(tail -1 "$HOME_DIR/probe-$rel.log")" >&2
  fi
done
ok=()
for dest in $(ls -d "$HOME_DIR"/releases/*/ | sort -V); do
  [ -f "$dest/.probe-ok" ] && ok+=("$(basename "$dest")=${dest%/}")
done
IFS=,
{
  echo "export EAGLECTL_ORACLE_PYTHON=$VENV/bin/python"
  echo "export EAGLECTL_ORACLE_RELEASES=${ok[*]}"
  echo "export EAGLECTL_ORACLE_TRITON_STUB=$HOME_DIR/triton_stub.py"
} | tee "$HOME_DIR/env.sh"
