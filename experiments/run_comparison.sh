#!/usr/bin/env bash
# The synthetic comparison on the default config: every method x seeds 0, 1, 2, then HiDe as
# published and its ablations x the same seeds, then the tables and plots. Resumable: run it again after a crash and
# finished runs only reload their results. About 3 h on 2 CPU cores.
#   bash experiments/run_comparison.sh [OUT_DIR]      (default: outputs/comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${1:-outputs/comparison}
$PY train.py --multirun experiment=synth_comparison resume=true hydra.sweep.dir="$OUT/methods"
for ablation in method=hide method.task_specific_layers=all 'method.task_specific_layers=[]' method.fusion=sum_ba \
                method.fusion=mean method.top_k=1 method.routing=oracle; do
  $PY train.py --multirun experiment=hide_ablations "$ablation" seed=0,1,2 resume=true \
    hydra.sweep.dir="$OUT/hide_ablations"
done
$PY experiments/compare.py "$OUT/methods" --out "$OUT/methods"
$PY experiments/compare.py "$OUT/hide_ablations" --out "$OUT/hide_ablations"
