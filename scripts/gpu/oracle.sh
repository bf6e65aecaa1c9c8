#!/usr/bin/env bash
# Device-side driver of the SGLang differential oracle on the SGLang bundle (sglang 0.5.15 installed, CUDA):
# builds the oracle corpus (tests/oracle/corpus.py: eaglectl's exports of every demo layout and one head per SGLang
# rule), runs SGLang's own draft model class and load_weights on every head on the GPU (tests/oracle/harness.py
# --installed --device cuda: no stubs, one process for the whole corpus; a head it did not reach is rerun in a
# process of its own), compares each with eaglectl's replay, and writes into $OUT:
#   oracle_gpu.json  the agreement table, every disagreement and every harness record
#   oracle_gpu.txt   the table as printed;  harness-installed.log  SGLang's stderr;  gpu.txt  the card
# Carry .sglang-bundle. Exit status: 0 all agree, 1 some head disagrees (see oracle_gpu.json), 2 SGLang did not run.
set -u
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/oracle-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
corpus=$(mktemp -d /tmp/eaglectl-oracle-corpus.XXXXXX)
t0=$(date +%s)
date -u +"start %FT%TZ" | tee "$OUT/oracle_gpu.txt"
timeout 280 python -m tests.oracle.driver --installed --device cuda --corpus "$corpus" --timeout 240 \
  --json "$OUT/oracle_gpu.json" --logs "$OUT" 2>&1 | tee -a "$OUT/oracle_gpu.txt"
rc=${PIPESTATUS[0]}
echo "oracle: exit $rc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/oracle_gpu.txt"
exit "$rc"
