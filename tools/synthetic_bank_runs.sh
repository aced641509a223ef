#!/usr/bin/env bash
# The committed synthetic runs of the code-bank PVQAE (chapter 8b: does routing earn its budget where
# context richness varies inside an image?), seeds given as arguments (default 0 1 2): `train` +
# `evaluate` as a user types them, at the demo's 128 px, one torch thread per process. Each
# evaluation is a JSON in book/_static/results with its command, commit and machine.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-../runs}
OUT=book/_static/results
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
seeds=${*:-0 1 2}
for s in $seeds; do
  run=$RUNS/synthetic_lite0_bank_seed$s
  $PY -m pvqae_lib train --dataset synthetic --backbone efficientnet-lite0 --image-size 128 --model pvqae \
      --seed "$s" --out "$run" --quiet --force
  ev() { $PY -m pvqae_lib evaluate --run "$run" --json "$OUT/synthetic_lite0_bank_seed$s$1.json" --force "${@:2}"; }
  ev "" --prior none
  ev _prior --prior universal
  ev _prior_mild --prior universal --prior-power 0.5
  for r in coarse middle fine mean; do ev "_$r" --prior none --route "$r"; done
done
