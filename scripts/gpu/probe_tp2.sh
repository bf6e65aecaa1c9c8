#!/usr/bin/env bash
# Device-side driver (nvidia-h200-x2): probe-target on a Llama-3.2-1B-shaped random model, tp 2 and 1.
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python - <<'PY'
from pathlib import Path
import sys; sys.path.insert(0, "benchmarks")
from target_runner_bench import build_model, LLAMA_1B
build_model(Path("/tmp/llama1b"), LLAMA_1B, "cuda")
PY
for tp in 2 1; do
  timeout 170 python -m eaglectl probe-target /tmp/llama1b --engine sglang --tp-size $tp --compare hf \
    --batch 8 --seq-len 1024 --json > $OUT/probe_tp$tp.json 2> /tmp/probe_tp$tp.err
  echo "probe tp$tp rc=$?"
done
