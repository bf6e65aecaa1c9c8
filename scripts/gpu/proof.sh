#!/usr/bin/env bash
# Device-side driver of the GPU proofs on the SGLang bundle: builds the distilled fixture when .gpu/fixture is not
# there (about 3 min; tarred into $OUT to be carried next time), then runs the GPU tests named as arguments
# (default: the serve NeMo test and the SGLang config-rule test). Carry .sglang-bundle and .gpu.
set -u
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
export EAGLECTL_DISTILL_FIXTURE=$PWD/.gpu/fixture EAGLECTL_GPU_REPORT=$OUT/serve_gpu_report.json
nvidia-smi --query-gpu=name,memory.total --format=csv > $OUT/gpu.txt
# ORACLE=1: the SGLang differential oracle (scripts/gpu/oracle.sh) runs beside the fixture build and the tests (one
# GPU, small models), its files into $OUT/oracle and back in results.tgz.
if [ "${ORACLE:-0}" = 1 ]; then
  mkdir -p $OUT/oracle; (OUT=$OUT/oracle bash scripts/gpu/oracle.sh > $OUT/oracle/driver.log 2>&1; echo "oracle rc=$?" >> $OUT/oracle/driver.log) &
  oracle_pid=$!
fi
if [ ! -d .gpu/fixture/nemo ]; then
  t0=$(date +%s)
  python .gpu/distill_eagle3.py .gpu/fixture > /tmp/fixture.log 2>&1 || { tail -20 /tmp/fixture.log; exit 1; }
  echo "fixture built in $(( $(date +%s) - t0 )) s"
  tar czf $OUT/fixture.tgz -C .gpu fixture
fi
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=("tests/test_serve_gpu.py::test_nemo_head_serves_with_full_acceptance_and_is_lossless"
                                 "tests/test_sglang_rules_gpu.py")
set -o pipefail
date -u +"start %FT%TZ" | tee $OUT/pytest.txt
timeout "${PYTEST_BUDGET:-540}" python -m pytest -m gpu "${tests[@]}" -s -p no:cacheprovider -q 2>&1 | tail -120 | tee -a $OUT/pytest.txt
date -u +"end %FT%TZ" | tee -a $OUT/pytest.txt
# EXPORT_BENCH=1: the export benchmark on this machine's CPUs and disk (idle, unlike a shared CPU machine).
if [ "${EXPORT_BENCH:-0}" = 1 ]; then
  timeout 300 python benchmarks/export_bench.py --runs 5 --phases --dir /tmp/export-bench --json > $OUT/export_bench.json \
    2> /tmp/export_bench.err; echo "export bench rc=$?"; tail -5 /tmp/export_bench.err
  { nproc; python -c "import torch,sys; print(sys.version, torch.__version__)"; df -T /tmp; } > $OUT/machine.txt
fi
[ -n "${oracle_pid:-}" ] && wait "$oracle_pid"
# At most 8 files come back: everything but the fixture in one archive.
(cd $OUT && find . -mindepth 1 -maxdepth 1 ! -name fixture.tgz ! -name results.tgz -printf '%P\n' | tar czf results.tgz -T - \
  && find . -mindepth 1 -maxdepth 1 ! -name fixture.tgz ! -name results.tgz -exec rm -rf {} +)
