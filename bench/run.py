"""Run the benchmarks side by side and report them: a table on the console and bench/results.json
(each benchmark's latest result, with the machine it ran on).

    python -m bench.run                      # every benchmark
    python -m bench.run eval_speedup --quick # one, with fewer repeats
    python -m bench.run synthetic_run_minutes --fresh   # + a first run in an empty cache
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import logging
import warnings

from rich.console import Console
from rich.table import Table

from bench.common import BENCH_DIR, machine
from hide.atomic import write_json_atomic

BENCHMARKS = ("eval_speedup", "hide_routing_overhead", "train_step_overhead", "caption_scoring", "synthetic_run_minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(BENCHMARKS), help=f"some of {BENCHMARKS}")
    parser.add_argument("--quick", action="store_true", help="fewer prompts and repeats")
    parser.add_argument("--fresh", action="store_true", help="synthetic_run_minutes: also a run in an empty cache")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    console = Console()
    path = BENCH_DIR / "results.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    for name in args.names:
        console.rule(name)
        module = importlib.import_module(f"bench.{name}")
        kwargs = {"fresh": True} if name == "synthetic_run_minutes" and args.fresh else {}
        outcome = module.run(quick=args.quick, **kwargs)
        outcome.update(machine=machine(), when=datetime.datetime.now().isoformat(timespec="seconds"),
                       quick=args.quick)
        stored[name] = outcome
        console.print_json(data=outcome)
        write_json_atomic(path, stored, indent=2)
    table = Table(title=f"bench/results.json ({machine()['processor']}, {machine()['cpus']} threads)")
    for column in ("benchmark", "goal", "ratio", "met", "when"):
        table.add_column(column)
    for name, outcome in stored.items():
        ratio = "-" if outcome.get("ratio") is None else f"{outcome['ratio']:.2f}x"
        table.add_row(name, outcome["goal"], ratio, str(outcome["met"]), outcome["when"])
    console.print(table)


if __name__ == "__main__":
    main()
