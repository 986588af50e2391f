"""Check a benchmark tree before hours of training: every missing file, schema fault, missing image
and count mismatch of every task, in one pass.

    python -m hide.data.check paths.data_dir=/data/UCIT            # benchmark=ucit by default
    python -m hide.data.check benchmark=ucit benchmark.num_tasks=3 paths.data_dir=...
    python -m hide.data.check benchmark=coin paths.data_dir=/data/CoIN

Per task: the instruction folder and files exist; each file passes the loader's validation (the
first fault in a file is reported, with the record it is in); every image of every record exists
(all missing ones are counted, the first few named); a test or reference file whose name declares
a count (UCIT's `test_3000.json`, `val_coco_type_3000.json`) holds that many records; the caption
references match the test file one to one. The general-ability sets `eval.retention` names
(`eval.retention=[mme,pope,seed] paths.retention_dir=...`) are checked too: every fault their
loaders refuse. Exits 1 when anything is wrong, after printing it all.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hide.data.formats import (DataFormatError, TaskSpec, load_caption_references, load_test_file,
                               load_train_file, repeated_ids, task_folder)

SHOWN_MISSING = 5


@dataclass
class TaskReport:
    name: str
    train: int | None = None
    test: int | None = None
    references: int | None = None
    missing_images: int = 0
    problems: list[str] = field(default_factory=list)
    # what loads but is not plain (repeated question ids, records without an image): said, not faults
    notes: list[str] = field(default_factory=list)


def declared_count(file_name: str) -> int | None:
    """The record count a UCIT file name declares (`test_3000.json` -> 3000), if any."""
    match = re.search(r"_(\d+)\.json$", file_name)
    return int(match.group(1)) if match else None


def check_task(data_dir: Path, spec: TaskSpec, instructions_dir: Path | None = None,
               datasets_dir: Path | None = None) -> TaskReport:
    report = TaskReport(spec.name)
    folder = task_folder(Path(instructions_dir or data_dir / "instructions"), spec)
    datasets = Path(datasets_dir or data_dir / "datasets")
    if not folder.is_dir():
        report.problems.append(f"the folder {folder} does not exist")
        return report
    files = {"train": folder / spec.train_file, "test": folder / spec.test_file}
    if spec.references_file:
        files["references"] = folder / spec.references_file
    for role, path in files.items():
        if not path.is_file():
            report.problems.append(f"the {role} file {path} does not exist")
    loaded = {}
    repeats: dict[str, list[int]] | None = {} if spec.repeated_ids else None
    readers = {"train": lambda path: load_train_file(path, datasets, check_images=False, task_name=spec.name,
                                                     text_only=spec.text_only),
               "test": lambda path: load_test_file(path, datasets, check_images=False, task_name=spec.name,
                                                   caption=spec.kind == "caption", repeats=repeats,
                                                   text_only=spec.text_only)}
    for role, reader in readers.items():
        if files[role].is_file():
            try:
                loaded[role] = reader(files[role])
                setattr(report, role, len(loaded[role]))
            except DataFormatError as error:
                report.problems.append(str(error))
    if repeats:
        report.notes.append(f"{files['test']}: {len(repeats)} question id(s) repeat ({repeated_ids(repeats)}): "
                            f"every record is answered, and under "
                            f"scoring=original each is scored against the last record of its id, as the official "
                            f"scorer does")
    for role in ("train", "test"):
        text_only = sum(r.image is None for r in loaded.get(role, []))
        if text_only:
            report.notes.append(f"{files[role]}: {text_only} record(s) without an image, answered as text-only")
    if "test" in loaded:
        expected = declared_count(spec.test_file)
        if expected is not None and expected != report.test:
            report.problems.append(f"{files['test']} holds {report.test} records, its name says {expected}")
        if "references" in files and files["references"].is_file():
            try:
                report.references = len(load_caption_references(files["references"], loaded["test"],
                                                                 test_file=files["test"]))
            except DataFormatError as error:
                report.problems.append(str(error))
    missing = [(role, record, Path(record.image)) for role in ("train", "test") for record in loaded.get(role, [])
               if record.image is not None and not Path(record.image).is_file()]
    report.missing_images = len(missing)
    if missing:
        shown = ", ".join(f"{p} ({role} record {getattr(r, 'id', None) or r.question_id})"
                          for role, r, p in missing[:SHOWN_MISSING])
        more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
        report.problems.append(f"{len(missing)} image(s) missing under {datasets}: {shown}{more}")
    return report


def check_benchmark(data_dir, specs: list[TaskSpec], instructions_dir=None, datasets_dir=None) -> list[TaskReport]:
    """Every task's report (`instructions_dir`, `datasets_dir`: a layout other than UCIT's
    `<data_dir>/instructions`, `<data_dir>/datasets`)."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        report = TaskReport("(benchmark root)")
        report.problems.append(f"{data_dir} does not exist: set paths.data_dir to the folder holding "
                               f"the benchmark's instructions and images")
        return [report]
    return [check_task(data_dir, spec, instructions_dir, datasets_dir) for spec in specs]


def format_reports(reports: list[TaskReport]) -> str:
    def n(v):
        return "-" if v is None else f"{v:,}"

    lines = ["| task | train | test | references | missing images | status |", "|---|---:|---:|---:|---:|---|"]
    for r in reports:
        lines.append(f"| {r.name} | {n(r.train)} | {n(r.test)} | {n(r.references)} | {r.missing_images:,} | "
                     f"{'ok' if not r.problems else f'{len(r.problems)} problem(s)'} |")
    for r in reports:
        for problem in r.problems:
            lines.append(f"\n[{r.name}] {problem}")
        for note in r.notes:
            lines.append(f"\n[{r.name}] note: {note}")
    return "\n".join(lines)


# -- general-ability sets (eval.retention) -------------------------------------------------------
def check_retention(cfg) -> list[TaskReport]:
    """A report per general-ability set that `eval.retention` names and that is read from disk
    (MME, POPE, SEED-Bench; the synthetic set is generated): the loader's every fault (a missing
    subtask, an image without its two questions, an answer that is not a letter, a repeated id,
    missing images), with its question count. `eval.retention=auto` names none."""
    from hide.data.retention import RetentionDataError
    from hide.errors import ConfigError
    from hide.run import build

    names = cfg.eval.get("retention", "auto")
    if names == "auto" or not names:
        return []
    sets = cfg.get("retention_sets") or {}
    reports = []
    for name in names:
        report = TaskReport(f"retention: {name}")
        node = sets.get(name)
        if node is None:
            report.problems.append(f"eval.retention names {name!r}, which retention_sets does not define "
                                   f"(it defines {list(sets)})")
        elif str(node.get("_target_", "")).endswith(".synthetic_general"):
            continue
        else:
            try:
                report.test = len(build(node, f"retention_sets.{name}").records)
            except RetentionDataError as error:
                report.test, report.missing_images = error.questions, error.missing_images
                report.problems += error.problems
            except (DataFormatError, ConfigError) as error:
                report.problems.append(str(error))
        reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    from hydra.utils import instantiate

    from hide.config import compose_config

    overrides = list(sys.argv[1:] if argv is None else argv)
    if not any(o.startswith("benchmark=") for o in overrides):
        overrides.insert(0, "benchmark=ucit")
    import tempfile

    cfg = compose_config(overrides, tempfile.mkdtemp(prefix="hide-check-"))
    benchmark = instantiate(cfg.benchmark)
    reports = benchmark.check() + check_retention(cfg)
    print(f"checking {benchmark.data_dir}")
    print(format_reports(reports))
    bad = sum(len(r.problems) for r in reports)
    print(f"\n{bad} problem(s) found" if bad else "\nall files present and valid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
