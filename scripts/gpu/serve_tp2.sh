#!/usr/bin/env bash
# Device-side driver (tensor parallelism, serve): serve --tp-size 2 vs 1 on nvidia-h200-x2.
source .sglang-bundle/activate
export PYTHONPATH=$PWD:$PYTHONPATH NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export EAGLECTL_DISTILL_FIXTURE=$PWD/.gpu/fixture EAGLECTL_GPU_REPORT=$OUT/serve_gpu_report.json
timeout 560 python -m pytest -m gpu tests/test_serve_gpu.py -k tp2 -s -p no:cacheprovider 2>&1 | tail -40 \
  | tee $OUT/serve_tp2_pytest.txt
