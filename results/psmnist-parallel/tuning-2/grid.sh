#!/usr/bin/env bash
# Runs the tuning grid of grid.json (tuning runs: validation only) one variant after another.
# Usage: bash results/psmnist-parallel/tuning-2/grid.sh [NAMES...]   (from the repository root)
set -euo pipefail
PY=${PY:-python}
names=${*:-A B C D E F G}
for n in $names; do
  sets=$($PY -c "import json,sys; g=json.load(open('results/psmnist-parallel/tuning-2/grid.json')); c={**g['common'], **g['grid']['$n']}; print(' '.join('--set %s=%s' % (k, json.dumps(v).replace(' ', '') if not isinstance(v, bool) else str(v)) for k, v in c.items()))")
  echo "== $n: $sets" >&2
  OMP_NUM_THREADS=1 $PY -m torchlmu reproduce psmnist-parallel $sets \
    --out runs/tune-pp/$n --threads 1 --no-progress
done
