#!/usr/bin/env bash
# The synthetic comparison on the default config: every method x seeds 0, 1, 2, then HiDe's
# ablations x the same seeds, then the tables and plots. Resumable: run it again after a crash and
# finished runs only reload their results. At the end the runs' files are kept in
# docs/results/runs/comparison/ (experiments/keep_runs.py), docs/results/comparison.* and
# hide_inference_summary.* are written from those kept files, and so are the tables of
# docs/results.md (experiments/docs_tables.py).
#   bash experiments/run_comparison.sh [OUT_DIR]      (default: outputs/comparison)
# HiDe's training does not depend on its inference choices, so each seed trains HiDe once with
# every expert kept and evaluates its final model as each ablation (experiments/hide_inference.py):
# as published (top layer routed, sum_ab below), expand-all, fuse-all, sum_ba, mean, top_k=1 and
# oracle routing. (conf/experiment/hide_ablations.yaml runs them as separate trainings instead,
# with full accuracy matrices.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${1:-outputs/comparison}
$PY train.py --multirun experiment=synth_comparison resume=true hydra.sweep.dir="$OUT/methods"
$PY experiments/compare.py "$OUT/methods" --out "$OUT/methods"
for seed in 0 1 2; do
  $PY experiments/hide_inference.py logger=none resume=true seed=$seed --out "$OUT/hide_ablations/s$seed" \
    --variants top:sum_ab all:sum_ab none:sum_ab top:sum_ba top:mean top:sum_ab:top_k=1 top:sum_ab:oracle
done
$PY experiments/hide_inference.py --summarize "$OUT"/hide_ablations/s{0,1,2} --out "$OUT/hide_ablations"
KEPT=docs/results/runs/comparison
rm -rf "$KEPT"
$PY experiments/keep_runs.py "$OUT" "$KEPT"
$PY experiments/compare.py "$KEPT/methods" --out docs/results
$PY experiments/hide_inference.py --summarize "$KEPT"/hide_ablations/s{0,1,2} --out docs/results
$PY experiments/docs_tables.py
