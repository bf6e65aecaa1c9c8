#!/usr/bin/env bash
# Device-side driver of the GPU proofs on the SGLang bundle: builds the distilled fixture when .gpu/fixture is not
# there (about 3 min; tarred into $OUT to be carried next time), then runs the GPU tests named as arguments
# (default: the serve NeMo test and the SGLang config-rule test). Carry .sglang-bundle and .gpu.
set -u
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
export EAGLECTL_DISTILL_FIXTURE=$PWD/.gpu/fixture EAGLECTL_GPU_REPORT=$OUT/serve_gpu_report.json
nvidia-smi --query-gpu=name,memory.total --format=csv > $OUT/gpu.txt
if [ ! -d .gpu/fixture/nemo ]; then
  t0=$(date +%s)
  python .gpu/distill_eagle3.py .gpu/fixture > $OUT/fixture.log 2>&1 || { tail -20 $OUT/fixture.log; exit 1; }
  echo "fixture built in $(( $(date +%s) - t0 )) s"
  tar czf $OUT/fixture.tgz -C .gpu fixture
fi
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=("tests/test_serve_gpu.py::test_nemo_head_serves_with_full_acceptance_and_is_lossless"
                                 "tests/test_sglang_rules_gpu.py")
set -o pipefail
date -u +"start %FT%TZ" | tee $OUT/pytest.txt
python -m pytest -m gpu "${tests[@]}" -s -p no:cacheprovider -q 2>&1 | tail -120 | tee -a $OUT/pytest.txt
date -u +"end %FT%TZ" | tee -a $OUT/pytest.txt
# ORACLE=1: then the SGLang differential oracle on the same machine (scripts/gpu/oracle.sh, into $OUT).
if [ "${ORACLE:-0}" = 1 ]; then bash scripts/gpu/oracle.sh; fi
