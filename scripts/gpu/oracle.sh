#!/usr/bin/env bash
# Device-side driver of the SGLang differential oracle on the SGLang bundle (sglang 0.5.15 installed, CUDA):
# builds the oracle corpus (tests/oracle/corpus.py: eaglectl's exports of every demo layout and one head per SGLang
# rule), runs SGLang's own draft model class and load_weights on every head on the GPU (tests/oracle/harness.py
# --installed --device cuda: no stubs, one process for the whole corpus; after a crash the head it died on runs
# alone and the rest again, within the time budget), compares each with eaglectl's replay, and writes into $OUT:
#   oracle_gpu.json  the agreement table, every disagreement and every harness record
#   oracle_gpu.txt   the table as printed;  harness-installed.log  SGLang's stderr;  gpu.txt  the card
# Carry .sglang-bundle. Exit status: 0 all agree (but tests/oracle/known.py), 1 a head disagrees otherwise, 2 SGLang
# did not run. One release takes 10-15 s on a 2-core CPU machine; the budget keeps the run well under 5 minutes.
set -u
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/oracle-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
corpus=$(mktemp -d /tmp/eaglectl-oracle-corpus.XXXXXX)
t0=$(date +%s)
date -u +"start %FT%TZ" | tee "$OUT/oracle_gpu.txt"
timeout 280 python -m tests.oracle.driver --installed --device cuda --corpus "$corpus" --timeout 200 --budget 230 \
  --json "$OUT/oracle_gpu.json" --logs "$OUT" 2>&1 | tee -a "$OUT/oracle_gpu.txt"
rc=${PIPESTATUS[0]}
echo "oracle: exit $rc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/oracle_gpu.txt"
exit "$rc"
