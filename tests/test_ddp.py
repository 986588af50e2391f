"""The multi-process path on CPU (trainer=ddp_cpu: 2 gloo processes) through the real train.py."""

import json
import subprocess
import sys

import pytest

from conftest import FAST, ROOT


def _train(out, *overrides):
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *FAST, "logger=none", f"hydra.run.dir={out}",
                           *overrides], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    if "trainer=ddp_cpu" in overrides:
        assert "Starting with 2 processes" in done.stdout + done.stderr
    return json.loads((out / "metrics.json").read_text())


def test_sharded_evaluation_equals_one_process(tmp_path):
    """A fixed model (zero-shot) evaluated by 2 processes, each on its shard, gives exactly the
    single-process answers and metrics."""
    one = _train(tmp_path / "one", "method=zeroshot")
    two = _train(tmp_path / "two", "method=zeroshot", "trainer=ddp_cpu")
    assert two["matrix"] == one["matrix"]
    for stage in (0,):
        a = json.loads((tmp_path / "one" / "predictions" / f"stage{stage}.json").read_text())
        b = json.loads((tmp_path / "two" / "predictions" / f"stage{stage}.json").read_text())
        assert a == b and sum(len(v) for v in a.values()) == 16


@pytest.mark.timeout(900)
def test_two_process_hide_training_matches_one_process(tmp_path):
    """Same global batch (2 x 4 vs 1 x 8): the anchors are exact sums, so routing is identical;
    the accuracy matrix agrees within 2 points per entry."""
    one = _train(tmp_path / "one", "method=hide", "data.batch_size=8")
    two = _train(tmp_path / "two", "method=hide", "data.batch_size=4", "trainer=ddp_cpu")
    assert two["routing_confusion_by_stage"] == one["routing_confusion_by_stage"]
    for row_one, row_two in zip(one["matrix"], two["matrix"]):
        for a, b in zip(row_one, row_two):
            assert abs(a - b) <= 2.0


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
    for stage in range(3):
        one = json.loads((tmp_path / "one" / "predictions" / f"stage{stage}.json").read_text())
        two = json.loads((tmp_path / "two" / "predictions" / f"stage{stage}.json").read_text())
        assert one == two, stage
    # ...and training did change the answers, so the agreement is not that of two untouched models
    before, after = (json.loads((tmp_path / "one" / "predictions" / f"stage{s}.json").read_text()) for s in (0, 2))
    assert before != after
