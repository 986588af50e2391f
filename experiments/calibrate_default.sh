#!/usr/bin/env bash
# The default config's calibration files: seeds 0 and 1 in full (R1-R5, which chose the default),
# seeds 2 and 3 for R1-R3 (sequential LoRA and multitask; no design choice looked at them).
# Resumable: a seed whose file is in docs/results/calibration/ is skipped, a killed one continues.
#   bash experiments/calibrate_default.sh [SEED ...]       (default: 0 1 2 3)
# Each seed's runs go to outputs/calibration/seed<N>/, its file to
# docs/results/calibration/seed<N>.json and its runs' files to docs/results/runs/calibration/seed<N>/;
# `python experiments/docs_tables.py` then writes the tables in docs/calibration.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
SEEDS=("$@")
[ ${#SEEDS[@]} -eq 0 ] && SEEDS=(0 1 2 3)
for seed in "${SEEDS[@]}"; do
  [ -f "docs/results/calibration/seed$seed.json" ] && { echo "seed $seed: done"; continue; }
  part=()
  [ "$seed" -ge 2 ] && part=(--r1-r3)
  $PY experiments/calibrate.py logger=none seed="$seed" --out "outputs/calibration/seed$seed" --resume "${part[@]}"
  mkdir -p docs/results/calibration
  cp "outputs/calibration/seed$seed/calibration.json" "docs/results/calibration/seed$seed.json"
  $PY experiments/keep_runs.py "outputs/calibration/seed$seed" "docs/results/runs/calibration/seed$seed"
done
$PY experiments/docs_tables.py
