"""The task loop: a built run (`hide.run.build_run`) taken through its whole task sequence.

    base model -> evaluate (row 0)
    for each stage t: method.on_task_start -> Trainer.fit -> method.on_task_end -> evaluate (row t)
    the base and the final model are also scored on the general-ability sets (eval.retention)

The run directory, its results and what a killed run resumes from belong to `hide.record.RunRecord`;
after every evaluation the accuracy matrix is written with every continual-learning metric.
"""

from __future__ import annotations

from omegaconf import DictConfig

from hide.checkpoint import TaskCheckpoint, capture_rng, load_trained_state, restore_rng
from hide.console import quiet_library_chatter
from hide.data.formats import TaskData
from hide.metrics.captions import score_captions
from hide.metrics.qa import exact_match_score, official_answers
from hide.record import RunRecord
from hide.run import Run, build_run, tasks_to_evaluate, trained_tasks


def score_task(task: TaskData, predictions: dict[str, str]) -> dict:
    """The task's score (0-100) and its breakdown: the benchmark's own metric for the task where
    it has one (CoIN's), else exact match for QA and the COCO caption metrics (mean of BLEU-1..4,
    METEOR, ROUGE-L, CIDEr) for captions."""
    if task.scorer is not None:
        return task.scorer(predictions)
    if task.kind == "caption":
        return score_captions(predictions, task.references)  # in the reference file's image order
    return {"score": exact_match_score(predictions, official_answers(task.test, task.scoring), task.scoring)}


def run_continual(cfg: DictConfig, out_dir) -> dict:
    """Run the configured method through the benchmark's task sequence; return metrics.json's
    content. With `cfg.resume` (true or a run directory) a killed run continues where its
    checkpoints stood (`hide.checkpoint`)."""
    return run_sequence(cfg, out_dir)[1]


def run_sequence(cfg: DictConfig, out_dir) -> tuple[Run, dict]:
    """`run_continual`, also returning the run with its final model (for experiment scripts that
    evaluate it further)."""
    quiet_library_chatter()
    record = RunRecord(cfg, out_dir)
    run = build_run(cfg, timer=record.timer)
    record.start(run)
    method, module, names = run.method, run.module, run.task_names
    if record.done_stage < 0:
        evaluate_stage(run, record, 0)
    for stage, train_on in enumerate(method.stages(len(run.tasks)), start=1):
        if stage <= record.done_stage:
            continue  # finished before a resume: its weights, method state and results are restored
        if train_on is None:
            continue  # no model exists at this stage (joint training): the row stays absent
        if not train_on:
            record.copy_row(stage - 1, stage)  # nothing trained: the model is the previous one
            continue
        record.rule(f"stage {stage}/{len(run.tasks)}: training on {', '.join(names[t] for t in train_on)}")
        module.stage, module.current_task = stage, train_on[-1]
        run.datamodule.set_stage(stage, train_on, method.extra_train_items(run.datamodule.tasks, train_on))
        run.to_compute_device()
        method.on_task_start(module, train_on[-1], run.datamodule.full_train_dataloader())
        train_stage(run, record, stage)
        run.to_compute_device()
        method.on_task_end(module, train_on[-1], run.datamodule.full_train_dataloader())
        evaluate_stage(run, record, stage)
    if record.final_retention_missing(run):
        trained = trained_tasks(method, len(run.tasks), len(method.stages(len(run.tasks))))
        method.on_eval_start(module, trained)
        score_retention(run, record, "final", untrained=not trained)
    return run, record.finish(run)


def evaluate_stage(run: Run, record: RunRecord, stage: int) -> None:
    """Score the model after `stage` (0: the base model) on the tasks the schedule asks for."""
    num_tasks = len(run.tasks)
    run.method.on_eval_start(run.module, trained_tasks(run.method, num_tasks, stage))
    wanted = tasks_to_evaluate(run.cfg.eval.schedule, stage, num_tasks)
    with record.timer("evaluation"):
        predictions = run.predict(wanted)
    with record.timer("scoring"):
        for t, preds in predictions.items():
            record.scored(stage, t, score_task(run.tasks[t], preds))
    record.method_facts(stage, run.method.eval_facts(run.task_names))
    if stage == 0:
        score_retention(run, record, "base")
    record.stage_done(run, stage, predictions, wanted)


def score_retention(run: Run, record: RunRecord, model: str, untrained: bool = False) -> None:
    """Score the general-ability sets (eval.retention) on the model as it stands, "base" or
    "final", into metrics.json's `retention`; a final model that nothing trained (zero-shot) is
    the base model, whose answers are scored again rather than generated again. The random
    generators are left as they were, so a run trains the same whether or not it is scored on them."""
    if not run.retention:
        return
    rng = capture_rng()
    for general in run.retention:
        if untrained:
            answers = record.retention_answers(general, "base")
        else:
            with record.timer("retention"):
                answers = run.answer_records(general.records, general.max_new_tokens, general.prompt_suffix,
                                             general.image_processing)
        record.retention_done(general, model, answers, general.score(answers))
    restore_rng(rng)


def train_stage(run: Run, record: RunRecord, stage: int) -> None:
    """Fit the stage, continuing from its task checkpoint when a killed run left one."""
    path = record.task_checkpoint
    saved = record.stage_checkpoint(stage)
    resume_from = saved["hide"] if saved is not None else None
    if resume_from is not None and resume_from["finished"]:
        # the stage's training had ended: take its weights and generators, skip the fit
        load_trained_state(run.module, {k.removeprefix("model."): v for k, v in saved["state_dict"].items()}, path)
        restore_rng(resume_from["rng"])
        record.console.print(f"stage {stage}: training had finished before the interruption ({path})")
        return
    every_n_steps = run.cfg.get("checkpoint", {}).get("every_n_steps")
    trainer = run.trainer(for_training=True,
                          extra_callbacks=[TaskCheckpoint(path, every_n_steps, stage, run.module.current_task)])
    if resume_from is not None:
        run.datamodule.resume_at(*resume_from["data_position"])
        record.console.print(f"stage {stage}: continuing from {path} (epoch {resume_from['data_position'][0]}, "
                             f"batch {resume_from['data_position'][1]})")
    with record.timer("training"):
        trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=str(path) if resume_from else None,
                    weights_only=False)  # our own file: it holds the generators' states
