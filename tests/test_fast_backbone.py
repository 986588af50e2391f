"""The fast test backbone must give answers that tests can tell apart: if it answered every prompt
alike (before or after training), every comparison of answers in the suite would hold for any code."""

import json

from hide.loop import run_continual


def test_fast_backbone_answers_differ_across_prompts_and_change_with_training(fast_cfg, tmp_path):
    metrics = run_continual(fast_cfg("method=lora", "benchmark.num_tasks=3"), tmp_path)
    stages = [json.loads((tmp_path / "predictions" / f"stage{s}.json").read_text()) for s in range(4)]
    for stage, answers in enumerate(stages):
        flat = [a for task in answers.values() for a in task.values()]
        assert len(flat) == 24 and len(set(flat)) >= 4, (stage, flat)  # varied within the run's prompts
        per_task = [len(set(task.values())) for task in answers.values()]
        assert sum(n > 1 for n in per_task) >= 2, (stage, answers)  # and within tasks
    for before, after in zip(stages, stages[1:]):
        changed = sum(before[t][q] != after[t][q] for t in before for q in before[t])
        assert changed >= 4, changed  # every task's training changes answers
    assert any(v > 0 for row in metrics["matrix"][1:] for v in row)  # some answers score
