#!/usr/bin/env bash
# The standing GPU checks, in one pass that fits a short GPU lease (about 6 minutes on one H200):
#   1. the CUDA tests (tests marked `gpu`: the LLaVA-1.5-7B-shaped LoRA step and batched
#      generation in bf16, the decoder on CUDA, continual runs of the fast config on one GPU), and
#      the 7B shape's steady-state training and generation speed (bench/gpu_step.py);
#   2. a short run of the shipped tiny backbone (HiDe, 3 tasks of 256 samples) on one GPU, under
#      FSDP and under DeepSpeed ZeRO-2, each with its wall time and accuracy matrix;
#   3. resuming under FSDP and ZeRO-2: a run killed inside its second task and continued with
#      `resume=` against the uninterrupted run of the same strategy (identical files, or the
#      largest score difference).
# Everything lands in $OUT (default: gpu_checks/): log.txt, pytest.txt, gpu_step.json and summary.json.
#
#   bash bench/gpu_checks.sh            # on a machine with a CUDA GPU and the project installed
#   WHEELS=.whl bash bench/gpu_checks.sh  # first install the wheels in .whl/ (and copy .whl/site/)
#                                         # into /tmp/site: machines without a registry
# An image with torch, Lightning, peft and tokenizers but no registry needs, as wheels for its Python:
# hydra-core, omegaconf, antlr4-python3-runtime and deepspeed (the last two built here with
# `pip wheel --no-deps`), hjson, pydantic, pydantic-core, annotated-types, typing-inspection,
# typing-extensions, the transformers this project runs on, and pycocoevalcap's Python files
# (its wheel, with METEOR's and SPICE's jars, is too large to carry) in .whl/site/.
set -u
OUT=${OUT:-gpu_checks}
mkdir -p "$OUT"
PY=${PY:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
RUNS=${RUNS_DIR:-/tmp/hide_gpu_runs}
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  # packages trimmed to what fits a transfer (pycocoevalcap without its jars: METEOR is then
  # reported absent, as on any machine without Java) are copied as they are
  if [ -d "$WHEELS/site" ]; then cp -r "$WHEELS/site/." /tmp/site/; fi
  export PYTHONPATH=/tmp/site:src${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
fi
exec > >(tee -a "$OUT/log.txt") 2>&1

step() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "CPU cores: $(nproc); java: $(command -v java || echo none)"
"$PY" - <<'EOF'
import importlib
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
for name in ("pytorch_lightning", "transformers", "peft", "hydra", "deepspeed"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # a missing optional extra is reported, not fatal
        print(name, "not importable:", type(err).__name__, err)
EOF

rm -rf "$RUNS"; mkdir -p "$RUNS"
exit_code() { echo "{\"rc\": $2}" > "$RUNS/$1.exit.json"; }  # for summary.json

step "CUDA tests"
timeout "$STEP_TIMEOUT" "$PY" -m pytest -p no:cacheprovider -m gpu -rA -s -q tests/test_gpu.py tests/test_generation.py \
  2>&1 | tee "$OUT/pytest.txt" | tail -25
exit_code cuda_tests "${PIPESTATUS[0]}"
# tests that also check the CUDA side when a GPU is there
timeout "$STEP_TIMEOUT" "$PY" -m pytest -p no:cacheprovider -rA -q \
  tests/test_hide_math.py::test_a_fused_layer_follows_the_model_to_another_dtype_and_device \
  2>&1 | tee -a "$OUT/pytest.txt" | tail -5
exit_code cuda_side_tests "${PIPESTATUS[0]}"

step "7B-shaped steady state (bench/gpu_step.py)"
timeout "$STEP_TIMEOUT" "$PY" -m bench.gpu_step --out "$OUT/gpu_step.json" 2>&1 | grep -v "use_cache=True"
exit_code gpu_step "${PIPESTATUS[0]}"

# A short continual run of the shipped default backbone: 3 tasks x 256 training samples (16 steps
# each at batch 16), 64 test samples per task; one task checkpoint every 8 steps.
TINY=(method=hide benchmark.num_tasks=3 benchmark.train_per_task=256 benchmark.test_per_task=64
      trainer.callbacks=[] trainer.enable_progress_bar=false logger=csv checkpoint.every_n_steps=8)
run() {  # run NAME [overrides...]: a train.py run into $RUNS/NAME (or $RUNS/$DIR), timed
  local name=$1; shift
  local dir=${DIR:-$name}
  step "run $name: $*"
  local start=$SECONDS
  timeout "$STEP_TIMEOUT" "$PY" train.py "${TINY[@]}" "$@" hydra.run.dir="$RUNS/$dir" > "$RUNS/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - start)) s"
  echo "{\"rc\": $rc, \"seconds\": $((SECONDS - start))}" > "$RUNS/$name.exit.json"
  grep -E "after |Error|error|Traceback|results in" "$RUNS/$name.log" | tail -12
  case $name in gpu|fsdp|zero2) cp "$RUNS/$name.log" "$OUT/run_$name.log" ;; esac
}
summarize() {  # summary.json from the runs so far (written again after each group of runs)
  RUNS="$RUNS" "$PY" - <<'EOF' | tee "$OUT/summary.json"
import json, os
from pathlib import Path
runs = Path(os.environ["RUNS"])
summary = {}
for exit_file in sorted(runs.glob("*.exit.json")):
    name = exit_file.name[: -len(".exit.json")]
    entry = json.loads(exit_file.read_text())
    # a resumed run writes into the killed run's directory
    folder = runs / name.replace("_resumed", "_killed")
    metrics, timing = folder / "metrics.json", folder / "timing.json"
    if metrics.exists() and not name.endswith("_killed"):
        m = json.loads(metrics.read_text())
        entry.update({k: m[k] for k in ("Last", "Avg", "MFT", "BWT", "matrix", "routing_accuracy") if k in m})
    if timing.exists() and not name.endswith("_killed"):
        entry["phases"] = json.loads(timing.read_text())["phases"]
    summary[name] = entry
for strategy in ("zero2", "fsdp"):
    done, whole = runs / f"{strategy}_killed" / "metrics.json", runs / strategy / "metrics.json"
    finished = all(summary.get(name, {}).get("rc") == 0 for name in (strategy, f"{strategy}_resumed"))
    if finished and done.exists() and whole.exists():
        # bf16 kernels on a GPU need not repeat bit for bit: the largest score difference says more
        resumed, uninterrupted = (json.loads(f.read_text())["matrix"] for f in (done, whole))
        summary[f"{strategy}_resume"] = {
            "identical": done.read_bytes() == whole.read_bytes(),
            "max_score_difference": max(abs(a - b) for ra, rb in zip(resumed, uninterrupted)
                                        for a, b in zip(ra, rb) if a is not None and b is not None)}
print(json.dumps(summary, indent=1))
EOF
}
run gpu trainer=gpu
run fsdp trainer=fsdp
run zero2 trainer=deepspeed_zero2
summarize > /dev/null
# killed at the 26th training batch (task 2's 10th, after its step-8 checkpoint), then resumed
HIDE_KILL_AT=train_batch:26 run zero2_killed trainer=deepspeed_zero2
DIR=zero2_killed run zero2_resumed trainer=deepspeed_zero2 resume=true
summarize > /dev/null
HIDE_KILL_AT=train_batch:26 run fsdp_killed trainer=fsdp
DIR=fsdp_killed run fsdp_resumed trainer=fsdp resume=true

step "summary"
summarize
