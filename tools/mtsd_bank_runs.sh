#!/usr/bin/env bash
# The committed MTSD runs of the code-bank PVQAE (chapter 8b, issue #28) and its equal-descriptor
# memory bank, seeds given as arguments (default 0 1 2): `train` + `evaluate` as a user types them,
# one torch thread per process (run two of these side by side on 2 cores). Each evaluation is a
# JSON in book/_static/results with its command, commit and machine; `make results` (tools/results_pages.py)
# then rebuilds the index. Run folders go to $RUNS (default ../runs, outside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-../runs}
ROOT=${MTSD_ROOT:-../shared/data/mtsd}
OUT=book/_static/results
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
seeds=${*:-0 1 2}
for s in $seeds; do
  run=$RUNS/mtsd_lite0_bank_seed$s
  $PY -m pvqae_lib train --dataset mtsd --root "$ROOT" --backbone efficientnet-lite0 --model pvqae --seed "$s" \
      --out "$run" --quiet --force
  ev() { $PY -m pvqae_lib evaluate --run "$run" --json "$OUT/mtsd_lite0_bank_seed$s$1.json" --force "${@:2}"; }
  ev "" --prior none
  ev _std --prior none --standardize
  ev _prior --prior universal
  ev _prior_mild --prior universal --prior-power 0.5
  for r in coarse middle fine mean; do ev "_$r" --prior none --route "$r"; done
  bank=$RUNS/mtsd_lite0_membank_all_seed$s
  $PY -m pvqae_lib train --dataset mtsd --root "$ROOT" --backbone efficientnet-lite0 --model membank \
      --bank-memory all --vq-level 0 --seed "$s" --out "$bank" --quiet --force
  $PY -m pvqae_lib evaluate --run "$bank" --json "$OUT/mtsd_lite0_membank_all_seed$s.json" --force
  $PY -m pvqae_lib evaluate --run "$bank" --standardize --json "$OUT/mtsd_lite0_membank_all_seed${s}_std.json" --force
done
