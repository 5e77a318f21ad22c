"""``python -m bench`` (``make bench``): heal's performance targets on this machine.

    python -m bench                  # everything, each benchmark twice (about 15 minutes)
    python -m bench --only distributed   # PostgreSQL + procrastinate: yardstick, 1/2/4 workers
    python -m bench --quick          # shorter windows, 2,000 polling actions, one run each
    python -m bench --only playbooks # tier 1's match over 10,000 playbooks (seconds)
    python -m bench --only wakes     # one benchmark (repeatable: --only ingest --only latency)
    python -m bench --profile out/   # also py-spy heal's process during each measured window

Each run starts fresh processes (heal under uvicorn, the fake ITSM) on 127.0.0.1 with a SQLite
database in a temporary directory, and stops them afterwards, also on Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import common, decisions, distributed, executors, ingest, latency, playbooks, wakes
from bench._proc import install_sigterm, stop_all
from bench.common import Result
from bench.experiments import NAMES
from bench.profile import summarise

# (benchmark, figure, target as text, passes?) for the summary.
TARGETS: list[tuple[str, str, str, Callable[[float], bool]]] = [
    ("ingest/plain", "alerts/s", ">= 5000", lambda v: v >= 5000),
    ("ingest/actions", "alerts/s", ">= 5000", lambda v: v >= 5000),
    ("latency", "p99 ms (from 202)", "<= 100", lambda v: v <= 100),
    ("wakes", "wakes/s", ">= 2000", lambda v: v >= 2000),
    ("wakes", "lateness p99 s", "<= 1", lambda v: v <= 1),
    ("wakes", "peak RSS MiB", "<= 500", lambda v: v <= 500),
    ("decisions", "p99 ms", "<= 50", lambda v: v <= 50),
    ("playbooks", "match p99 ms", "<= 10", lambda v: v <= 10),
]
# Which figure ranks the runs of a benchmark, and whether higher is better.
HEADLINE = {
    "ingest/plain": ("alerts/s", True),
    "ingest/actions": ("alerts/s", True),
    "latency": ("p99 ms (from 202)", False),
    "wakes": ("wakes/s", True),
    "decisions": ("p99 ms", False),
    "playbooks": ("match p99 ms", False),
    **{f"executors/{kind}": ("CPU ms/step", False) for kind in executors.SETUPS},
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, one run each")
    parser.add_argument(
        "--only",
        action="append",
        choices=[
            "ingest",
            "latency",
            "wakes",
            "distributed",
            "executors",
            "decisions",
            "playbooks",
        ],
        help="repeatable",
    )
    parser.add_argument("--runs", type=int, help="runs per benchmark (default 2, quick 1)")
    parser.add_argument("--profile", type=Path, help="directory for py-spy profiles of heal")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--concurrency", type=int, default=4, help="ingest connections")
    parser.add_argument("--wake-actions", type=int, help="polling actions (10000; quick 2000)")
    parser.add_argument("--wake-interval", type=float, help="poll interval s (4; quick 1)")
    parser.add_argument(
        "--latency-rate", type=float, default=200, help="alerts/s for latency (200)"
    )
    parser.add_argument(
        "--executor-actions", type=int, help="actions per executor type (200; quick 50)"
    )
    parser.add_argument("--heal-workers", type=int, help="HEAL_WORKERS for heal (default 64)")
    parser.add_argument(
        "--experiment",
        default="",
        help=f"patch heal with prototypes of fixes, comma-separated: {', '.join(NAMES)}",
    )
    args = parser.parse_args(argv)
    unknown = {e for e in args.experiment.split(",") if e} - set(NAMES)
    if unknown:
        parser.error(f"unknown experiment(s): {', '.join(sorted(unknown))}")
    args.only = args.only or [
        "ingest",
        "latency",
        "wakes",
        "distributed",
        "executors",
        "decisions",
        "playbooks",
    ]
    args.executor_actions = args.executor_actions or (50 if args.quick else 200)
    args.runs = args.runs or (1 if args.quick else 2)
    args.wake_actions = args.wake_actions or (2000 if args.quick else 10_000)
    args.wake_interval = args.wake_interval or (1.0 if args.quick else 4.0)
    return args


Step = Callable[[int], Coroutine[Any, Any, Result]]


def plan(args: argparse.Namespace) -> list[tuple[str, Step]]:
    quick = args.quick

    def profile(name: str, run: int) -> Path | None:
        return args.profile / f"{name}-run{run}.txt" if args.profile else None

    steps: list[tuple[str, Step]] = []
    if "ingest" in args.only:
        for variant in ("plain", "actions"):
            steps.append(
                (
                    f"ingest/{variant}",
                    lambda run, v=variant: ingest.run(
                        v,
                        run,
                        seconds=8 if quick else 20,
                        concurrency=args.concurrency,
                        profile=profile(f"ingest-{v}", run),
                    ),
                )
            )
    if "latency" in args.only:
        steps.append(
            (
                "latency",
                lambda run: latency.run(
                    run,
                    seconds=10 if quick else 30,
                    rate=args.latency_rate,
                    batch=10,
                    profile=profile("latency", run),
                ),
            )
        )
    if "wakes" in args.only:
        steps.append(
            (
                "wakes",
                lambda run: wakes.run(
                    run,
                    actions=args.wake_actions,
                    interval=args.wake_interval,
                    seconds=15 if quick else 45,
                    profile=profile("wakes", run),
                ),
            )
        )
    if "executors" in args.only:
        for kind in executors.SETUPS:
            steps.append(
                (
                    f"executors/{kind}",
                    lambda run, k=kind: executors.run(k, run, actions=args.executor_actions),
                )
            )
    if "decisions" in args.only:
        count = 200 if quick else 1000
        steps.append(("decisions", lambda run: decisions.run(run, decisions=count)))
    if "playbooks" in args.only:
        steps.append(("playbooks", lambda run: playbooks.run(run)))
    return steps


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.release()}"
    )


def report(results: list[Result]) -> str:
    lines = [f"machine: {machine()}"]
    if common.HEAL_ARGS:
        lines.append(f"heal started with: {' '.join(common.HEAL_ARGS)}")
    lines.append("")
    by_bench: dict[str, list[Result]] = {}
    for result in results:
        by_bench.setdefault(result.bench, []).append(result)
    ranked: dict[str, tuple[Result, Result]] = {}
    for bench, runs in by_bench.items():
        key, higher = HEADLINE[bench]
        ordered = sorted(runs, key=lambda r: r.figures.get(key, math.nan), reverse=higher)
        ranked[bench] = (ordered[0], ordered[-1])

    header = f"{'benchmark':<22} {'figure':<22} {'better run':>12} {'worse run':>12}  target"
    lines += [header, "-" * len(header)]
    for bench, (better, worse) in ranked.items():
        for figure, value in better.figures.items():
            target = next(
                ((text, check) for b, f, text, check in TARGETS if b == bench and f == figure),
                None,
            )
            verdict = ""
            if target:
                text, check = target
                verdict = f"{text}  {'met' if check(value) else 'NOT met'}"
                if len(by_bench[bench]) > 1:
                    worse_ok = check(worse.figures.get(figure, math.nan))
                    verdict += "" if worse_ok == check(value) else " (worse run: not)"
            lines.append(
                f"{bench:<22} {figure:<22} {fmt(value):>12} "
                f"{fmt(worse.figures.get(figure, math.nan)):>12}  {verdict}"
            )
        for label, result in (("better", better), ("worse", worse)):
            if len(by_bench[bench]) == 1 and label == "worse":
                continue
            details = ", ".join(f"{k}: {fmt(v)}" for k, v in result.notes.items())
            lines.append(f"{'':<22} {label} run #{result.run}: {details}")
        lines.append("")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    if "distributed" in args.only:
        # Issue 3: PostgreSQL + procrastinate; it prints its own figures.
        print("== distributed (PostgreSQL + procrastinate) ...", flush=True)
        await distributed.main(
            argparse.Namespace(
                actions=2000 if args.quick else 10_000,
                interval=2.0,
                jobs=5000 if args.quick else 20_000,
                concurrency=32,
                warmup=5.0 if args.quick else 10.0,
                window=10.0 if args.quick else 20.0,
            )
        )
    for name, step in plan(args):
        for run in range(1, args.runs + 1):
            began = time.monotonic()
            print(f"== {name} run {run}/{args.runs} ...", flush=True)
            result = await step(run)
            figures = ", ".join(f"{k} {fmt(v)}" for k, v in result.figures.items())
            print(f"   {figures}  [{time.monotonic() - began:.0f} s]", flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    install_sigterm()
    if args.heal_workers:
        common.HEAL_ARGS += ["--workers", str(args.heal_workers)]
    if args.experiment:
        common.HEAL_ARGS += ["--experiment", args.experiment]
        print(f"EXPERIMENT: heal patched with {args.experiment} (bench/experiments.py)")
    began = time.monotonic()
    try:
        results = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print("interrupted; stopping child processes", file=sys.stderr)
        return 130
    finally:
        stop_all()
    print()
    print(report(results))
    print(f"total: {time.monotonic() - began:.0f} s")
    if args.profile:
        for path in sorted(args.profile.glob("*.txt")):
            if not path.name.endswith(".summary.txt"):
                summary = summarise(path, 15)
                path.with_suffix(".summary.txt").write_text(summary + "\n")
                print(summary)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "results": [
                        {"bench": r.bench, "run": r.run, "figures": r.figures, "notes": r.notes}
                        for r in results
                    ],
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
