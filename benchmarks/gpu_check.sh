#!/usr/bin/env bash
# The GPU check on a lent CUDA machine (repository root; no install: PYTHONPATH=src). With the
# defaults (steps 1, 2, 3 and 6; the probe ran in session 10 and the deep model's issue is
# closed, so 4 and 5 are off) about 10 minutes (sessions 3-10: tests ~2-3 min, table ~2 min,
# then the sweep ~1-2 min and the cuts: 150 + 120 s); under a 10-minute limit per command,
# split it in two calls: PSMNIST_SECONDS=0 FLOORS_SECONDS=0, then TESTS=0 BENCH=0. Set a step's
# variable to 0 to skip it:
#   1. the CUDA tests unless TESTS=0 (every test marked gpu: each module's fast forms on the GPU
#      against the CPU float64 step loop, the Triton scan's kernels against the CPU step loops,
#      fit on the GPU with a resume on the CPU, a quick reproduce);
#   2. the benchmark table on the GPU (W1, W2, W4, W5 and nn.LSTM with cuDNN), unless BENCH=0;
#      then W5 again with the fully recurrent scan on its Triton kernels (torchlmu.triton_scan,
#      TORCHLMU_TRITON_SCAN=1; off by default until this check has passed on a GPU),
#      benchmarks/triton_scan_sweep.py: the scan's step loops against the kernels' settings,
#      benchmarks/carry_scan_ab.py on the GPU (the split carry against the step loop),
#      benchmarks/chunk_size_sweep.py on the GPU (the blocked memory's block length) and
#      benchmarks/large_order.py on the GPU (orders 1024 and 4096);
#   3. the psMNIST paper model's 10-epoch timing on the GPU (a tuning run: no test metric),
#      with the Triton scan unless TRITON_SCAN=0 (steps 3 and 4),
#      cut at PSMNIST_SECONDS (default 150: about 5 epochs with the graph; 330 for all 10;
#      0 skips it); checkpoints each epoch, --resume continues it on a later machine.
#   4. benchmarks/cuda_graph_probe.py (the paper model's step: eager, the hand-made CUDA graph,
#      torch.compile reduce-overhead), cut at PROBE_SECONDS (default 0: skipped; 150 runs it);
#   5. the deep LMU network's cost on the GPU (issue 19: candidate C of
#      results/deep-psmnist/tuning/grid2.json, 2 epochs, a tuning run: validation only), cut at
#      DEEP_SECONDS (default 0: skipped; 120 runs it).
#   6. each workload against its kernel floor on the GPU (benchmarks/floor_ratios.py, 2 rounds),
#      cut at FLOORS_SECONDS (default 120; 0 skips it).
# Everything lands in $OUT (default /tmp/gpu_check). MNIST: $TORCHLMU_DATA/mnist. BUNDLE=FILE
# packs it all into one .tar.gz at the end (the device tool brings back at most 8 files), e.g.
#   BUNDLE=$OUT/gpu-check.tar.gz OUT=/tmp/gc PSMNIST_SECONDS=0 FLOORS_SECONDS=0 bash benchmarks/gpu_check.sh
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
PY=${PY:-python3}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))"
  $PY -c "import triton; print('triton', triton.__version__)"
  if [ "${TESTS:-1}" = 1 ]; then
    $PY -m pytest -q -p no:cacheprovider -m gpu tests --ignore=tests/test_triton_scan.py
    # the Triton kernels' tests compile about 110 specialisations (1-2 s each, on the CPU):
    # spread over 8 of the machine's cores where pytest-xdist is installed (the image has it)
    XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
    $PY -m pytest -q -p no:cacheprovider -m gpu ${XDIST:-} tests/test_triton_scan.py
  fi
} 2>&1 | tee -a "$OUT/tests.log"
if [ "${BENCH:-1}" = 1 ]; then
  $PY benchmarks/bench.py --device cuda --threads 1 ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-cuda.jsonl"
  TORCHLMU_TRITON_SCAN=1 $PY benchmarks/bench.py --device cuda --threads 1 --only W5 2>&1 \
    | tee "$OUT/bench-cuda-W5-triton.jsonl"
  $PY benchmarks/triton_scan_sweep.py 2>&1 | tee "$OUT/triton-scan-sweep.jsonl"
  # the blocked memory's carry as a step loop against carry_scan's grouped passes on the GPU
  # (ops.CALL_FLOPS["cuda"] is a guess until this runs; about a minute)
  $PY benchmarks/carry_scan_ab.py --device cuda --threads 1 --rounds 3 2>&1 | tee "$OUT/carry-scan-ab-cuda.jsonl"
  # the blocked memory's block length on the GPU (ops.chunk_size keeps L ≈ d there, unmeasured
  # since the CPU's rule changed to √(8d) in session 14; under a minute)
  $PY benchmarks/chunk_size_sweep.py --device cuda --threads 1 --rounds 2 2>&1 | tee "$OUT/chunk-size-sweep-cuda.jsonl"
  # large orders built on the GPU (item 5; seconds): the ZOH's float64 squarings there
  $PY benchmarks/large_order.py --orders 1024 4096 --device cuda 2>&1 | tee "$OUT/large-order-cuda.jsonl"
fi
export TORCHLMU_TRITON_SCAN=${TRITON_SCAN:-1}
if [ "$TORCHLMU_TRITON_SCAN" = 1 ]; then
  # the kernels on this GPU against the CPU loops first (seconds): a failure keeps steps 3-4
  # on the step loops instead of spending device time on a broken path
  if ! $PY -m pytest -q -x -p no:cacheprovider tests/test_triton_scan.py \
      -k test_scan_and_gradients_through_the_kernels > "$OUT/triton-guard.log" 2>&1; then
    echo "Triton scan failed its check on this GPU (triton-guard.log): steps 3-4 without it"
    export TORCHLMU_TRITON_SCAN=0
  fi
fi
if [ "${PSMNIST_SECONDS:-150}" -gt 0 ]; then
  timeout --signal=KILL "${PSMNIST_SECONDS:-150}" $PY -m torchlmu reproduce psmnist --device cuda \
    --no-progress --threads 4 --resume --out "$OUT/psmnist" ${PSMNIST_ARGS:-} 2>&1 | tee "$OUT/psmnist.log"
fi
if [ "${PROBE_SECONDS:-0}" -gt 0 ]; then
  timeout --signal=KILL "${PROBE_SECONDS:-0}" $PY benchmarks/cuda_graph_probe.py 2>&1 | tee "$OUT/cuda_graph_probe.jsonl"
fi
if [ "${DEEP_SECONDS:-0}" -gt 0 ]; then
  timeout --signal=KILL "${DEEP_SECONDS:-0}" $PY -m torchlmu reproduce deep-psmnist --device cuda \
    --no-progress --threads 4 --set d_model=96 --set num_blocks=2 --set order=128 --set channels=8 \
    --set epochs=2 --out "$OUT/deep-psmnist-C" 2>&1 | tee "$OUT/deep-psmnist.log"
fi
if [ "${FLOORS_SECONDS:-120}" -gt 0 ]; then
  timeout --signal=KILL "${FLOORS_SECONDS:-120}" $PY benchmarks/floor_ratios.py --device cuda \
    --threads 1 --rounds 2 2>&1 | tee "$OUT/floor-ratios-cuda.jsonl"
fi
if [ -n "${BUNDLE:-}" ]; then
  tar czf "$BUNDLE" -C "$OUT" . && echo "bundled into $BUNDLE"
fi
