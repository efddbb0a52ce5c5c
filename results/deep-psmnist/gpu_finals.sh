#!/usr/bin/env bash
# Issue 19's committed final runs on one lent GPU, all at once (session 10): the deep LMU network
# on psMNIST, sequential MNIST and sequential Fashion-MNIST (3 seeds each, one after another: the
# harness refuses --jobs on a GPU) and the nn.LSTM baselines on the last two (the psMNIST one ran
# on the CPU). Learned in session 10: the device machine's git is the session's starting commit,
# not this checkout's, so a protocol committed since looks uncommitted there; carry a copy of .git
# (e.g. .gitcopy, listed in .git/info/exclude) and restore it first (rm -rf .git; cp -r .gitcopy .git). Each run cites its
# protocol.json, which must be committed before this script runs (the harness checks). The deep
# model is launch-bound on a GPU at batch 100 (about 10 ms per step alone), so the 11 processes
# share the card. Each run stops at LIMIT seconds; an epoch's checkpoint is written atomically,
# so a stopped run continues with the same command plus --resume (on the CPU as well).
#
#   TORCHLMU_DATA=DIR LIMIT=370 bash results/deep-psmnist/gpu_finals.sh LOGDIR
set -u
LOG=${1:-/tmp/finals-log}
mkdir -p "$LOG"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
PY=${PY:-python3}
LIMIT=${LIMIT:-370}
DEVICE=${DEVICE:-cuda}

run() { # log name, experiment, folder holding protocol.json, more arguments
  local name=$1 exp=$2 dir=$3
  shift 3
  timeout -k 5 "$LIMIT" $PY -m torchlmu reproduce "$exp" --protocol "$dir/protocol.json" \
    --out "$dir/final" --device "$DEVICE" --threads 1 --no-progress "$@" >"$LOG/$name.log" 2>&1
  echo "$name rc=$? $(date -u +%T)" >>"$LOG/rc.txt"
}

echo "start $(date -u +%T)" >"$LOG/rc.txt"
run deep-psmnist deep-psmnist results/deep-psmnist &
run deep-smnist deep-smnist results/deep-smnist &
run deep-sfmnist deep-sfmnist results/deep-sfmnist &
run deep-smnist-lstm deep-smnist results/deep-smnist/lstm &
run deep-sfmnist-lstm deep-sfmnist results/deep-sfmnist/lstm &
wait
