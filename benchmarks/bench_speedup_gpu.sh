#!/usr/bin/env bash
# Device-side driver for bench's speedup proof: a head of the distilled fixture on a deeper copy of its target
# (benchmarks/deepen_target.py: same function, LAYERS layers), baseline and speculative configs at batch size 1.
# Needs .sglang-bundle and .gpu/fixture carried to the device machine (see scripts/gpu/serve_proof.sh).
# usage: [GRAPHS=1] bash benchmarks/bench_speedup_gpu.sh LAYERS DRAFT [--config S,K,N ...] [more bench options]
#   GRAPHS=1: CUDA graphs on (what a production server runs; start-up captures them), else --disable-cuda-graph
#   DRAFT: the head inside the fixture, e.g. specforge (aux ids recorded) or nemo/epoch_0_step_100 (none recorded:
#   SGLang then derives the capture from the deeper target's depth, not the depth the head was trained on)
set -u
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
layers=$1; draft=$2; shift 2
graphs=(--disable-cuda-graph); [ "${GRAPHS:-0}" = 1 ] && graphs=()
work=$(mktemp -d)
cp -r .gpu/fixture "$work/fx"
python benchmarks/deepen_target.py "$work/fx/target" "$work/fx/deep" "$layers"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python -m eaglectl --version > "$OUT/version.txt"
python -m eaglectl bench --json --target "$work/fx/deep" --draft "$work/fx/$draft" \
  --prompts "$work/fx/prompts.json" --num-prompts 8 --max-new-tokens 64 --batch-size 1 \
  --results "$OUT/deep.jsonl" --timeout 240 --mem-fraction-static 0.5 --attention-backend triton \
  "${graphs[@]}" --skip-tokenizer-init "$@" -- --sampling-backend pytorch --max-running-requests 16 \
  > "$OUT/deep.json" 2> "$OUT/deep.err"
echo "bench exit $?"
tail -30 "$OUT/deep.err"
