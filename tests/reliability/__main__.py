"""The full reliability run, with the figures for docs/RELIABILITY.md:

    .venv/bin/python -m tests.reliability                  # 140 trials, 100 examples a command
    .venv/bin/python -m tests.reliability --trials 30 --examples 40   # quicker

1. crash trials (SIGKILL at seeded random moments, reconcile, invariants, restart);
2. the backend-fault, hostile-input, security and database-contention tests, with the
   hostile-input examples raised to --examples;
then prints the figures and exits 1 on any invariant violation or failed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from .harness import REPO, TrialResult, run_trials
from .stats import ENV, totals

TEST_FILES = [
    "tests/test_rel_faults.py",
    "tests/test_rel_hostile.py",
    "tests/test_rel_security.py",
    "tests/test_rel_races.py",
    "tests/test_db_contention.py",
    "tests/test_crash.py",
    "tests/test_concurrency.py",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--trials", type=int, default=140, help="crash trials (default 140)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the trials (default 1)")
    parser.add_argument("--examples", type=int, default=100, help="hostile inputs a command")
    parser.add_argument("--parallel", type=int, default=2, help="trials and test workers at once")
    parser.add_argument("--skip-tests", action="store_true", help="crash trials only")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="hvkube-reliability-"))
    stats_file = root / "stats.jsonl"
    done: list[TrialResult] = []

    def progress(result: TrialResult) -> None:
        done.append(result)
        mark = "ok" if not result.violations else "VIOLATION"
        print(
            f"trial {result.trial:4d} {result.scenario:16s} killed {result.killed_mid_work}/"
            f"{result.workers} fixed {result.fixed_by_reconcile:2d} claims {result.claims:3d} "
            f"{result.seconds:5.1f}s {mark}",
            flush=True,
        )
        for line in result.violations:
            print(f"    {line}", flush=True)

    print(f"crash trials: {args.trials}, seed {args.seed}, {args.parallel} at once", flush=True)
    results = run_trials(args.trials, args.seed, root, args.parallel, on_result=progress)
    violations = [f"trial {r.trial} ({r.scenario}): {v}" for r in results for v in r.violations]

    tests = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not args.skip_tests:
        junit = root / "junit.xml"
        env = {
            **os.environ,
            ENV: str(stats_file),
            "HVKUBE_HOSTILE_EXAMPLES": str(args.examples),
            "HVKUBE_HOSTILE_SEED": str(args.seed),
        }
        print(f"tests: {' '.join(TEST_FILES)} ({args.examples} hostile inputs a command)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-n",
                str(args.parallel),
                f"--junitxml={junit}",
                *TEST_FILES,
            ],
            cwd=REPO,
            env=env,
            check=False,
        )
        if junit.exists():
            suite = ET.parse(junit).getroot()
            suite = suite if suite.tag == "testsuite" else suite[0]
            tests = {key: int(suite.get(key, "0")) for key in tests}

    figures = totals(stats_file)
    by_scenario = Counter(r.scenario for r in results)
    summary = {
        "seed": args.seed,
        "crash_trials": len(results),
        "crash_trials_by_scenario": dict(sorted(by_scenario.items())),
        "processes_killed_mid_work": sum(r.killed_mid_work for r in results),
        "steps_finished_or_rolled_back_by_reconcile": sum(r.fixed_by_reconcile for r in results),
        "claims_checked": sum(r.claims for r in results),
        "agents_checked": sum(r.agents for r in results),
        "faults_injected": figures.get("faults injected", 0),
        "hostile_inputs_tried": figures.get("inputs tried", 0),
        "tests": tests,
        "invariant_violations": len(violations),
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "violations": violations}, indent=2))
    failed = violations or tests["failures"] or tests["errors"]
    if failed:
        print(f"the trials' data folders are kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
