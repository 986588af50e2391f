"""The multi-process path on CPU (trainer=ddp_cpu: 2 gloo processes) through the real train.py."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import FAST, ROOT


def _train(out, *overrides, probe=None):
    """train.py's metrics; with `probe` (a folder), each process lists the prompts it answers
    there (tests/probes/sitecustomize.py)."""
    env = dict(os.environ)
    if probe is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests" / "probes"), env.get("PYTHONPATH")]))
        env["HIDE_ANSWER_PROBE"] = str(probe)
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *FAST, "logger=none", f"hydra.run.dir={out}",
                           *overrides], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    if "trainer=ddp_cpu" in overrides:
        assert "running on 2 processes" in done.stdout
        # rank 0 alone speaks: each stage's heading once, no per-process Lightning lines
        headings = [line for line in done.stdout.splitlines() if "stage " in line and "training on" in line]
        assert (headings or "method=zeroshot" in overrides) and len(headings) == len(set(headings)), headings
        assert "Initializing distributed" not in done.stdout + done.stderr
    return json.loads((out / "metrics.json").read_text())


def _answers(run, stage):
    return json.loads((run / "predictions" / f"stage{stage}.json").read_text())


def _trained(run):
    return torch.load(run / "checkpoints" / "run_state.pt", weights_only=False)["trained"]


def test_sharded_evaluation_equals_one_process(tmp_path):
    """A fixed model (zero-shot) evaluated by 2 processes, each on its shard, gives exactly the
    single-process answer to every prompt, and the same metrics."""
    overrides = ["method=zeroshot", "benchmark.num_tasks=3"]  # a caption task: non-zero scores
    one = _train(tmp_path / "one", *overrides)
    two = _train(tmp_path / "two", *overrides, "trainer=ddp_cpu", probe=tmp_path / "probe")
    assert two["matrix"] == one["matrix"] and any(v > 0 for v in one["matrix"][0])
    a, b = _answers(tmp_path / "one", 0), _answers(tmp_path / "two", 0)
    assert sum(len(v) for v in a.values()) == 24
    # each rank answered its own half of the base model's prompts, and together all of them (the
    # lines of the general-ability set, task -1, left aside)
    asked = {r: [line for line in (tmp_path / "probe" / f"rank{r}.txt").read_text().splitlines()
                 if not line.startswith("-1 ")] for r in (0, 1)}
    assert [len(asked[0]), len(asked[1])] == [12, 12]
    assert not set(asked[0]) & set(asked[1]) and len(set(asked[0]) | set(asked[1])) == 24
    assert len({answer for task in a.values() for answer in task.values()}) > 4  # a shard swap would show
    for task in a:
        assert list(b[task]) == list(a[task]) and all(b[task][q] == a[task][q] for q in a[task]), task


def _same_training(one, two, stages):
    """Same answers at every stage, and the same trained weights up to the float rounding of
    summing gradients in another order (all-reduce of two half-batch means vs one mean): the
    difference's norm at most 1/50 of how far training moved the adapters. Norms, not the largest
    element: Adam scales each element's step by its own gradient's size, so an element whose
    gradient is near zero can take a step of the learning rate's size either way on a rounding
    difference, while a wrong reduction (a sum for a mean, one rank's gradient) moves them all."""
    for stage in range(stages + 1):
        assert _answers(two, stage) == _answers(one, stage), stage
    a, b = _trained(one), _trained(two)
    assert a.keys() == b.keys()
    moved = sum(float(t.double().pow(2).sum()) for k, t in a.items() if "lora_B" in k) ** 0.5  # B starts at 0
    differ = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a) ** 0.5
    assert moved > 0 and differ < moved / 50, (differ, moved)
    before, after = _answers(one, 0), _answers(one, stages)
    assert sum(before[t][q] != after[t][q] for t in before for q in before[t]) >= 4  # training changed answers


@pytest.mark.timeout(900)
def test_two_process_hide_training_matches_one_process(tmp_path):
    """Same global batch (2 x 4 vs 1 x 8) without dropout: the anchors are exact sums, so routing is
    identical, and the experts, projector and answers are the single process's."""
    common = ["method=hide", "method.dropout=0"]
    one = _train(tmp_path / "one", *common, "data.batch_size=8")
    two = _train(tmp_path / "two", *common, "data.batch_size=4", "trainer=ddp_cpu")
    assert two["routing_confusion_by_stage"] == one["routing_confusion_by_stage"]
    _same_training(tmp_path / "one", tmp_path / "two", stages=2)


def test_rank_sharded_batches_are_the_single_process_global_batches():
    import torch

    from hide.data.datamodule import RankShardedBatches

    def batches(n, per_device, rank, world, seed=3):
        return list(RankShardedBatches(n, per_device, rank, world, torch.Generator().manual_seed(seed)))

    single = list(torch.utils.data.DataLoader(list(range(50)), batch_size=8, shuffle=True,
                                              generator=torch.Generator().manual_seed(3)))
    ranks = [batches(50, 4, r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 7
    for k, global_batch in enumerate(single):
        assert ranks[0][k] + ranks[1][k] == global_batch.tolist()
    # a last global batch smaller than the number of ranks is dropped on every rank alike
    three = [batches(14, 4, r, 3) for r in range(3)]  # global batches of 12, then 2 < 3 ranks
    assert [len(b) for b in three] == [1, 1, 1] and [len(b[0]) for b in three] == [4, 4, 4]
    assert len(RankShardedBatches(14, 4, 0, 3, torch.Generator())) == 1
    # an uneven last global batch (5 items on 2 ranks) splits 2 + 3
    tail = [batches(13, 4, r, 2)[-1] for r in range(2)]
    assert [len(t) for t in tail] == [2, 3]


def test_two_process_training_without_dropout_gives_the_same_answers(tmp_path):
    """Same global batches (2 x 4 vs 1 x 8) and no dropout: the averaged gradients are the
    single-process ones (every answer here has the same number of tokens), so the trained models
    answer every test prompt alike after every stage."""
    common = ["method=lora", "method.dropout=0", "trainer.max_epochs=2"]
    _train(tmp_path / "one", *common, "data.batch_size=8")
    _train(tmp_path / "two", *common, "data.batch_size=4", "trainer=ddp_cpu")
    _same_training(tmp_path / "one", tmp_path / "two", stages=2)
