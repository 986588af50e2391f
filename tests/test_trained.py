"""A finished run's model, rebuilt by `hide.load_run`: its answers are the run's own predictions."""

import json

import pytest
from PIL import Image

import hide
from hide.checkpoint import CheckpointError
from hide.loop import run_continual

# Caption tasks (ObjectCaption) give long, varied answers, QA tasks short ones: both kinds are compared.
TASKS = "benchmark.select=[Renditions,ObjectCaption]"


def _finished_run(finished_run, tmp_path, method: str, *overrides: str):
    return finished_run(tmp_path, f"method={method}", TASKS, "benchmark.test_per_task=12", *overrides)


@pytest.mark.parametrize("method", ["lora", "olora", "moelora", "hide", "disco"])
def test_load_run_answers_as_the_run_did(finished_run, tmp_path, method):
    run_dir = _finished_run(finished_run, tmp_path, method)
    for stage in (None, 1):
        model = hide.load_run(run_dir, stage=stage)
        assert model.stage == (2 if stage is None else 1)
        recorded = json.loads((run_dir / "predictions" / f"stage{model.stage}.json").read_text())
        for index, task in enumerate(model.run.tasks):
            answers = model.predict([r.image for r in task.test], [r.text for r in task.test])
            assert dict(zip([r.question_id for r in task.test], answers)) == recorded[task.name], (method, stage)
            assert model.predict_task(task, index) == recorded[task.name]
    # the stages differ, so the comparison above can tell them apart
    final = json.loads((run_dir / "predictions" / "stage2.json").read_text())
    assert final != json.loads((run_dir / "predictions" / "stage1.json").read_text())


def test_predict_takes_images_in_memory_and_any_batch_size(finished_run, tmp_path):
    run_dir = _finished_run(finished_run, tmp_path, "lora")
    model = hide.load_run(run_dir)
    task = model.run.tasks[0]
    paths, texts = [r.image for r in task.test], [r.text for r in task.test]
    from_files = model.predict(paths, texts, batch_size=5)
    in_memory = [Image.open(p).copy() for p in paths]
    assert model.predict(in_memory, texts, batch_size=5) == from_files
    assert model.predict(paths[:3], texts[:3], batch_size=1) == from_files[:3]
    with pytest.raises(ValueError, match="2 images for 3 instructions"):
        model.predict(paths[:2], texts[:3])


def test_zeroshot_and_multitask_stages(finished_run, tmp_path):
    run_dir = _finished_run(finished_run, tmp_path / "zeroshot", "zeroshot")
    assert hide.load_run(run_dir).stage == 2  # no training: every stage is the base model
    run_dir = _finished_run(finished_run, tmp_path / "multitask", "multitask")
    assert hide.load_run(run_dir).stage == 2
    assert hide.load_run(run_dir, stage=0).stage == 0
    with pytest.raises(CheckpointError, match="no model after stage 1"):
        hide.load_run(run_dir, stage=1)


def test_load_run_errors_name_the_problem(finished_run, tmp_path):
    with pytest.raises(CheckpointError, match="is not a run directory"):
        hide.load_run(tmp_path)
    run_dir = _finished_run(finished_run, tmp_path / "run", "lora", "checkpoint.keep_stage_models=false")
    assert hide.load_run(run_dir).stage == 2  # the latest model is always kept
    with pytest.raises(CheckpointError, match="keep_stage_models=false"):
        hide.load_run(run_dir, stage=1)
    with pytest.raises(CheckpointError, match=r"stages 0\.\.2 finished"):
        hide.load_run(run_dir, stage=3)


def test_evaluate_scores_a_task_the_run_never_saw(finished_run, tmp_path):
    from hide.evaluate import load_benchmark_tasks, main

    from conftest import FAST

    run_dir = _finished_run(finished_run, tmp_path / "run", "hide")
    unseen = [*FAST, "benchmark.num_tasks=null", "benchmark.select=[Renditions,ClevrMath]", "benchmark.test_per_task=12"]
    assert main([str(run_dir), "stage=1", *unseen]) == 0
    out = run_dir / "evaluations" / "stage1-Renditions-ClevrMath"
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    assert metrics["stage"] == 1 and metrics["trained_on"] == ["Renditions"]
    assert metrics["tasks"] == ["Renditions", "ClevrMath"]
    # a task of the run, at the same stage: the run's own answers and score
    recorded = json.loads((run_dir / "predictions" / "stage1.json").read_text())
    assert predictions["Renditions"] == recorded["Renditions"]
    assert metrics["row"][0] == json.loads((run_dir / "metrics.json").read_text())["matrix"][1][0]
    # the task it never saw: every question answered, scored by exact match against its answers
    clevr = load_benchmark_tasks(hide.load_run(run_dir, stage=1), unseen)[1]
    assert clevr.name == "ClevrMath" and set(predictions["ClevrMath"]) == {r.question_id for r in clevr.test}
    right = sum(predictions["ClevrMath"][r.question_id] == r.answer for r in clevr.test)
    assert metrics["row"][1] == pytest.approx(100 * right / len(clevr.test))


def test_evaluate_reports_a_bad_folder_whole(finished_run, tmp_path, capsys):
    from hide.evaluate import main

    from conftest import FAST

    run_dir = _finished_run(finished_run, tmp_path / "run", "lora")
    folder = tmp_path / "new"
    (folder / "instructions" / "IconQA").mkdir(parents=True)
    (folder / "datasets").mkdir()
    (folder / "instructions" / "IconQA" / "test_3000.json").write_text("[{\"question_id\": 1}]")
    assert main([str(run_dir), *FAST, "benchmark=ucit", f"paths.data_dir={folder}", "benchmark.select=[IconQA,CLEVR]"]) == 1
    err = capsys.readouterr().err
    assert "hide.data.check" in err and "IconQA" in err and "CLEVR" in err
    assert "train file" in err and "does not exist" in err


def test_a_resumed_run_writes_the_stage_model_a_kill_left_out(fast_cfg, tmp_path):
    """Killed between its run state's write and its stage model's: the resumed run writes the model."""
    import torch

    # trained here, not copied: a resumed run must be in the folder it was started in
    run_dir = tmp_path
    run_continual(fast_cfg("method=lora", TASKS, "benchmark.test_per_task=12"), run_dir)
    (run_dir / "checkpoints" / "stage2.pt").unlink()
    run_continual(fast_cfg("method=lora", TASKS, "benchmark.test_per_task=12", f"resume={run_dir}"), run_dir)
    stage_model = torch.load(run_dir / "checkpoints" / "stage2.pt", weights_only=False)
    run_state = torch.load(run_dir / "checkpoints" / "run_state.pt", weights_only=False)
    assert stage_model["stage"] == 2 and stage_model["trained"].keys() == run_state["trained"].keys()
    assert all(torch.equal(stage_model["trained"][k], run_state["trained"][k]) for k in run_state["trained"])
