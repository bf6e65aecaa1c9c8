#!/usr/bin/env bash
# Device-side driver for the serve GPU proof. Needs .sglang-bundle (shared/sglang-gpu/build-bundle.sh)
# and .gpu/fixture (python ../shared/fixtures/distill_eagle3.py .gpu/fixture) carried to the device machine.
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH
export EAGLECTL_DISTILL_FIXTURE=$PWD/.gpu/fixture EAGLECTL_GPU_REPORT=$OUT/serve_gpu_report.json
nvidia-smi --query-gpu=name,memory.total --format=csv > $OUT/gpu.txt
python -m pytest -m gpu tests/test_serve_gpu.py -s -p no:cacheprovider 2>&1 | tail -80 | tee $OUT/serve_gpu_pytest.txt
