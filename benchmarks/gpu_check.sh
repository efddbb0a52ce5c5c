#!/usr/bin/env bash
# The GPU check on a lent CUDA machine (repository root; no install: PYTHONPATH=src), in one
# call of the device tool:
#
#   BUNDLE=$OUT/gpu-check.tar.gz OUT=/tmp/gc bash benchmarks/gpu_check.sh      # timeout_s 600
#
# The whole run keeps within DEADLINE_SECONDS (default 560) of its start: each step is cut at
# what is left of it (less a reserve for the bundle) or at its own cap, whichever is sooner,
# skipped when under MIN_STEP_SECONDS (default 20) are left, and the bundle is packed on every
# exit, a cut or failed step included (not on SIGKILL: keep DEADLINE_SECONDS below the device
# tool's timeout_s). Steps, most wanted first (the goal each measures, then
# the sessions' costs on an H100/H200):
#   guard    the Triton scan's kernels on this GPU against the CPU loops (seconds), each form
#            (triton_scan.FORMS: rows, cols); a failure of the row form runs the psMNIST timing
#            on the step loops instead, of the column form on the row form. TRITON_SCAN=0 skips
#            it and the kernels. Every other step runs the step loops (TORCHLMU_TRITON_SCAN=0),
#            so that the table and the tests measure and check them.
#   triton-sweep  benchmarks/triton_scan_sweep.py at the psMNIST model's size against the step
#            loops: the column form's settings and the row form's default (TRITON_SWEEP_ARGS,
#            default "--form cols"; "--form both" adds the row form's other twelve, ~2 min
#            more); TRITON_SWEEP=0 skips it. benchmarks/pick_triton_setting.py then picks its
#            fastest sound setting (the column form only where its guard passed) for the runs
#            on the kernels below (triton-pick.txt).
#   psmnist  item 2: the psMNIST paper model's 10-epoch time (a tuning run: no test metric),
#            cut at PSMNIST_SECONDS (default 180; the goal is 150); checkpoints each epoch. On
#            the kernels in PSMNIST_FORM and PSMNIST_COLS (default: the sweep's pick; without
#            a sweep, cols where its guard passed, else rows).
#   bench    item 1, the GPU table: benchmarks/bench.py --device cuda (W1, W2, W4, W5, cuDNN's
#            nn.LSTM), W5 again on the Triton kernels, and benchmarks/large_order.py (item 5:
#            the ZOH's float64 squarings on the GPU). BENCH=0 skips it (~2-3 min).
#   tests    every test marked gpu (each module's fast forms on the GPU against the CPU float64
#            step loop, fit on the GPU with a resume on the CPU, a quick reproduce), then the
#            Triton kernels' tests (both forms, the column form's in both launches: ~370
#            cases, most compiling a kernel of their own, spread over 8 cores where
#            pytest-xdist is installed). TESTS=0 skips it (~3-5 min).
#   sweeps   settings measured on the GPU: carry_scan_ab.py (ops.CALL_FLOPS["cuda"]) and
#            chunk_size_sweep.py (ops.chunk_size keeps L ≈ d on a GPU). SWEEPS=0 skips it
#            (~2 min).
#   floors   each workload against its kernel floor on the GPU (floor_ratios.py, 2 rounds),
#            cut at FLOORS_SECONDS (default 120; 0 skips it).
#   probe    benchmarks/cuda_graph_probe.py (eager step, hand-made CUDA graph, torch.compile
#            reduce-overhead), cut at PROBE_SECONDS (default 0: skipped; it ran in session 10).
#   deep     the deep LMU network's cost (candidate C of results/deep-psmnist/tuning/grid2.json,
#            2 epochs, validation only), cut at DEEP_SECONDS (default 0: skipped).
# What one call leaves undone, a second does with the rest switched off, e.g.
#   BUNDLE=$OUT/gpu-check-2.tar.gz OUT=/tmp/gc PSMNIST_SECONDS=0 BENCH=0 TESTS=0 bash benchmarks/gpu_check.sh
# steps.jsonl in the bundle says what each step got and took. The device tool brings back at
# most 8 files: hence the one .tar.gz.
#
# MNIST (for psmnist): $TORCHLMU_DATA/mnist, else $GPU_DATA/mnist (default .gpu-data/ here, which
# git ignores). ../shared does not travel to the device machine, so before the call:
#   mkdir -p .gpu-data && cp -r ../shared/data/mnist .gpu-data/
# and name ".gpu-data" in the device tool's carry.
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
PY=${PY:-python3}
DEADLINE=${DEADLINE_SECONDS:-560}
RESERVE=10 # seconds kept for the bundle
GPU_DATA=${GPU_DATA:-$PWD/.gpu-data}
if [ -z "${TORCHLMU_DATA:-}" ] && [ -d "$GPU_DATA/mnist" ]; then export TORCHLMU_DATA=$GPU_DATA; fi
START=$SECONDS

bundle() {
  if [ -n "${BUNDLE:-}" ]; then
    tar czf "$BUNDLE" -C "$OUT" . && echo "bundled into $BUNDLE"
  fi
}
trap bundle EXIT

# run NAME CAP LOG CMD...: CMD cut at CAP seconds (0: no cap of its own) or at the deadline,
# its output appended to $OUT/LOG; one line per step in $OUT/steps.jsonl; RC its exit status
# (137: cut), or "skipped".
run() {
  local name=$1 cap=$2 log=$3
  shift 3
  local limit=$((DEADLINE - RESERVE - (SECONDS - START)))
  if [ "$limit" -lt "${MIN_STEP_SECONDS:-20}" ] || [ "$limit" -lt 1 ]; then
    echo "{\"step\": \"$name\", \"skipped\": \"$limit s left\"}" | tee -a "$OUT/steps.jsonl"
    RC=skipped
    return 0
  fi
  if [ "$cap" -gt 0 ] && [ "$cap" -lt "$limit" ]; then limit=$cap; fi
  local t0=$SECONDS
  timeout --signal=KILL "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
  RC=${PIPESTATUS[0]}
  echo "{\"step\": \"$name\", \"rc\": $RC, \"seconds\": $((SECONDS - t0)), \"limit_s\": $limit}" \
    | tee -a "$OUT/steps.jsonl"
}

run info 60 tests.log bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c \"import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))\"
  $PY -c \"import triton; print('triton', triton.__version__)\"
  echo \"MNIST from: \${TORCHLMU_DATA:-not set, the defaults of the command line}\""

# The step loops everywhere but where a step asks for the Triton kernels (TRITON: 1 while they
# are in play; a failed guard turns it off).
export TORCHLMU_TRITON_SCAN=0
TRITON=${TRITON_SCAN:-1}
# pytest without the device machine's pytest-benchmark plugin: with xdist on, its warning is an
# error before any test runs (session 17's tests-triton step)
PYTEST="$PY -m pytest -q -p no:cacheprovider -p no:benchmark"
FORM=rows
COLS_SETTING= # TORCHLMU_TRITON_COLS for the runs on the kernels (empty: triton_scan.COLS)
if [ "$TRITON" = 1 ]; then
  run guard 0 triton-guard.log env TORCHLMU_TRITON_SCAN=1 $PYTEST -x \
    tests/test_triton_scan.py -k test_scan_and_gradients_through_the_kernels
  if [ "$RC" != 0 ]; then
    echo "Triton scan failed or missed its check on this GPU (triton-guard.log): without it"
    TRITON=0
  fi
fi
if [ "$TRITON" = 1 ]; then
  # the column form, in one launch with its barrier: the whole scan and its gradients with 1, 2
  # and 4 programs per row block against the float64 loop
  run guard-cols 180 triton-guard.log env TORCHLMU_TRITON_SCAN=1 $PYTEST -x \
    tests/test_triton_scan.py -k test_scan_and_gradients_through_the_column_kernels
  if [ "$RC" = 0 ]; then FORM=cols; else echo "column form failed on this GPU: the row form"; fi
  if [ "${TRITON_SWEEP:-1}" = 1 ]; then
    run triton-sweep 0 triton-scan-sweep.jsonl $PY benchmarks/triton_scan_sweep.py \
      ${TRITON_SWEEP_ARGS:---form cols}
    # the runs on the kernels below take the sweep's fastest sound setting (the column form
    # only where its guard passed); $OUT/triton-pick.txt says which
    PICKED=$($PY benchmarks/pick_triton_setting.py "$OUT/triton-scan-sweep.jsonl" --forms rows \
      $([ "$FORM" = cols ] && echo cols) 2>&1 | tee -a "$OUT/triton-pick.txt" \
      | grep -E '^TORCHLMU_TRITON_(FORM|COLS)=')
    if grep -q '^TORCHLMU_TRITON_FORM=' <<<"$PICKED"; then
      FORM=$(sed -n 's/^TORCHLMU_TRITON_FORM=//p' <<<"$PICKED")
      COLS_SETTING=$(sed -n 's/^TORCHLMU_TRITON_COLS=//p' <<<"$PICKED")
    fi
  fi
fi
if [ "${PSMNIST_SECONDS:-180}" -gt 0 ]; then
  run psmnist "${PSMNIST_SECONDS:-180}" psmnist.log env TORCHLMU_TRITON_SCAN=$TRITON \
    TORCHLMU_TRITON_FORM=${PSMNIST_FORM:-$FORM} "TORCHLMU_TRITON_COLS=${PSMNIST_COLS:-$COLS_SETTING}" \
    $PY -m torchlmu reproduce psmnist --device cuda --no-progress --threads 4 --resume \
    --out "$OUT/psmnist" ${PSMNIST_ARGS:-}
fi
if [ "${BENCH:-1}" = 1 ]; then
  run bench 0 bench-cuda.jsonl $PY benchmarks/bench.py --device cuda --threads 1 ${BENCH_ARGS:-}
  if [ "$TRITON" = 1 ]; then
    run bench-w5-triton 0 bench-cuda-W5-triton.jsonl env TORCHLMU_TRITON_SCAN=1 \
      TORCHLMU_TRITON_FORM=$FORM "TORCHLMU_TRITON_COLS=$COLS_SETTING" \
      $PY benchmarks/bench.py --device cuda --threads 1 --only W5
  fi
  run large-order 0 large-order-cuda.jsonl \
    $PY benchmarks/large_order.py --orders 1024 4096 --device cuda
fi
if [ "${TESTS:-1}" = 1 ]; then
  run tests 0 tests.log $PYTEST -m gpu tests \
    --ignore=tests/test_triton_scan.py
  XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
  run tests-triton 0 tests.log $PYTEST -m gpu ${XDIST:-} \
    tests/test_triton_scan.py
fi
if [ "${SWEEPS:-1}" = 1 ]; then
  run carry-ab 0 carry-scan-ab-cuda.jsonl \
    $PY benchmarks/carry_scan_ab.py --device cuda --threads 1 --rounds 3
  run chunk-sweep 0 chunk-size-sweep-cuda.jsonl \
    $PY benchmarks/chunk_size_sweep.py --device cuda --threads 1 --rounds 2
fi
if [ "${FLOORS_SECONDS:-120}" -gt 0 ]; then
  run floors "${FLOORS_SECONDS:-120}" floor-ratios-cuda.jsonl \
    $PY benchmarks/floor_ratios.py --device cuda --threads 1 --rounds 2
fi
if [ "${PROBE_SECONDS:-0}" -gt 0 ]; then
  run probe "$PROBE_SECONDS" cuda_graph_probe.jsonl $PY benchmarks/cuda_graph_probe.py
fi
if [ "${DEEP_SECONDS:-0}" -gt 0 ]; then
  run deep "$DEEP_SECONDS" deep-psmnist.log $PY -m torchlmu reproduce deep-psmnist --device cuda \
    --no-progress --threads 4 --set d_model=96 --set num_blocks=2 --set order=128 --set channels=8 \
    --set epochs=2 --out "$OUT/deep-psmnist-C"
fi
