#!/usr/bin/env bash
# R4 against its levers: the default design and one change at a time (rank per task, update size,
# decoder width, depth, depth with a smaller update, ObjectCaption's references in captioners'
# varied wordings, alone and with the caption tasks on more samples), each calibrated on
# seed 0 (R1-R5, HiDe's variants, update sizes, times).
# Resumable: run it again after a crash; a design whose file is in docs/results/levers/ is skipped.
#   bash experiments/run_levers.sh [DESIGN ...]      (default: all, in the order below)
# Each design's calibration goes to outputs/levers/<design>/, its file to
# docs/results/levers/<design>.json and its runs' files to docs/results/runs/levers/<design>/;
# `python experiments/docs_tables.py` then writes the table in docs/calibration.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
declare -A DESIGNS=(
  [a-default]=""
  [b-rank4]="method.rank=4 method.alpha=8"
  [c-rank2]="method.rank=2 method.alpha=4"
  [d-lr-half]="optim.lr=5e-4"
  [e-width384]="model.text.hidden_size=384 model.text.intermediate_size=1024 model.text.num_attention_heads=8 model.text.num_key_value_heads=8"
  [f-depth8]="model.text.num_hidden_layers=8"
  [g-depth8-lr-half]="model.text.num_hidden_layers=8 optim.lr=5e-4"
  [h-depth8-lr7e-4]="model.text.num_hidden_layers=8 optim.lr=7e-4"
  [i-varied-captions]="benchmark.object_captions=varied benchmark.object_caption_color_share=0.5"
  [j-varied-captions-2x]="benchmark.object_captions=varied benchmark.object_caption_color_share=0.7 +benchmark.train_scale.ObjectCaption=2.0 benchmark.train_scale.SceneCaption=2.0"
  [k-varied-captions-scene-1.75x]="benchmark.object_captions=varied benchmark.object_caption_color_share=0.7 +benchmark.train_scale.ObjectCaption=2.0 benchmark.train_scale.SceneCaption=1.75"
  [l-varied-captions-1.5x-scene-1.75x]="benchmark.object_captions=varied benchmark.object_caption_color_share=0.7 +benchmark.train_scale.ObjectCaption=1.5 benchmark.train_scale.SceneCaption=1.75"
  [m-depth8-varied-captions]="model.text.num_hidden_layers=8 benchmark.object_captions=varied benchmark.object_caption_color_share=0.7"
)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=($(printf '%s\n' "${!DESIGNS[@]}" | sort))
for name in "${NAMES[@]}"; do
  [ -f "docs/results/levers/$name.json" ] && { echo "$name: done"; continue; }
  if [ "$name" = a-default ] && [ -f docs/results/calibration/seed0.json ]; then  # the default's own seed 0
    mkdir -p docs/results/levers docs/results/runs/levers
    cp docs/results/calibration/seed0.json docs/results/levers/a-default.json
    cp -r docs/results/runs/calibration/seed0 docs/results/runs/levers/a-default
    continue
  fi
  # shellcheck disable=SC2086
  overrides=(${DESIGNS[$name]})
  $PY -m hide.models.tiny build "${overrides[@]}"   # a new backbone is built before the clock starts
  $PY experiments/calibrate.py logger=none seed=0 "${overrides[@]}" --out "outputs/levers/$name" --resume
  mkdir -p docs/results/levers
  cp "outputs/levers/$name/calibration.json" "docs/results/levers/$name.json"
  $PY experiments/keep_runs.py "outputs/levers/$name" "docs/results/runs/levers/$name"
done
$PY experiments/docs_tables.py
