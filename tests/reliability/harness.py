"""Crash trials: set a pool up, start workers on it, SIGKILL them at seeded random moments,
then restart as an operator would (reconcile, finish what was pending, bring the pool back
to size) and check the invariants before and after.

Each trial has its own data folder; trials are independent and can run in parallel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import open_engine
from core.engine import Engine
from core.models import AgentStatus

from .invariants import check_invariants
from .journal import Journal

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
BOOT = (
    f"import sys; sys.path.insert(0, {str(TESTS)!r}); "
    "from reliability.workload import main; raise SystemExit(main(sys.argv[1:]))"
)

# A 45 s boot takes 0.45 s, a resume 15 ms, a reset 20 ms: kills land inside steps.
SCALE = 0.01


@dataclass(frozen=True)
class Scenario:
    name: str
    count: int  # pool size
    warm: int
    hot: int
    provisioned: bool
    workers: tuple[str, ...]  # workload kinds, one process each
    window: tuple[float, float]  # kill between these many seconds after the workers start
    release: str = "reset"
    backend: str = "sim"  # the workers' backend: sim, or hyperv over the fake PowerShell host
    then: tuple[str, ...] = ()  # a second round of work once the first is killed
    then_window: tuple[float, float] = (0.0, 0.4)


def controller_available() -> bool:
    """`hvkube run` (the controller) exists in this build."""
    return importlib.util.find_spec("core.controller") is not None


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("provision", 5, 2, 1, False, ("provision",), (0.0, 1.2)),
        Scenario("acquire-release", 4, 3, 1, True, ("agents", "agents"), (0.1, 2.0)),
        Scenario("scale-down", 6, 3, 1, True, ("scale", "agents"), (0.1, 2.0)),
        Scenario("acquire-hyperv", 3, 2, 1, True, ("agents",), (0.2, 3.0), backend="hyperv"),
        # A reconcile that is itself killed: the next one must still finish its work.
        Scenario(
            "reconcile-killed", 4, 3, 1, True, ("agents", "scale"), (0.1, 1.5), then=("reconcile",)
        ),
        # Two operators (or an operator and the controller) reconciling at once.
        Scenario(
            "reconcile-twice",
            4,
            3,
            1,
            True,
            ("agents", "agents"),
            (0.1, 1.5),
            then=("reconcile", "reconcile"),
            then_window=(120.0, 120.0),
        ),
        # The controller keeps the pool at size and tiers and runs the agents submitted
        # meanwhile; the pool starts empty, so kills land in builds and in agents' runs.
        *(
            [Scenario("controller", 3, 1, 1, False, ("controller", "submit"), (0.3, 3.0))]
            if controller_available()
            else []
        ),
    )
}


@dataclass
class TrialResult:
    trial: int
    scenario: str
    seed: str
    killed_mid_work: int = 0
    workers: int = 0
    fixed_by_reconcile: int = 0
    reported_missing: int = 0
    reported_orphans: int = 0
    claims: int = 0
    agents: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _setup(db: str, sc: Scenario) -> None:
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=2048)
        engine.create_pool("p", "t", count=sc.count, warm=sc.warm, hot=sc.hot, release=sc.release)
        if sc.provisioned:
            report = engine.provision_pool("p")
            assert not report.failed, report.failed


def _restart(engine: Engine, sc: Scenario, result: TrialResult) -> None:
    """What an operator does after a crash, beyond reconcile: end the agents nobody will run,
    give back leases whose scripts died, and bring the pool back to its size."""
    for agent in engine.list_agents(limit=1_000_000):
        if not agent.status.finished:
            engine.cancel_agent(agent.id)
    for vm in engine.list_vms():
        if vm.holder is not None:
            engine.release(vm.name, holder=vm.holder)
    # An interrupted scale-down leaves the new size recorded and the surplus in place: the
    # operator (or the controller) runs it again.
    report = engine.scale_pool("p", engine.get_pool("p").desired_count)
    for name, why in report.failed.items():
        result.violations.append(f"after restart: {name} could not be built: {why}")
    pool = engine.get_pool("p")
    vms = engine.list_vms(pool="p")
    if len(vms) != pool.desired_count:
        result.violations.append(
            f"after restart: pool has {len(vms)} VMs, wants {pool.desired_count}"
        )
    again = engine.reconcile()
    if again.fixed or again.errors:
        result.violations.append(f"a second reconcile still had work: {again.fixed + again.errors}")
    result.violations += [
        f"after restart: {v}" for v in check_invariants(engine, None, again, errors_allowed=False)
    ]
    if any(a.status is AgentStatus.RUNNING for a in engine.list_agents(limit=1_000_000)):
        result.violations.append("after restart: an agent is still running")


def _phase(
    sc: Scenario,
    kinds: tuple[str, ...],
    window: tuple[float, float],
    rng: random.Random,
    seed: int,
    trial: int,
    folder: Path,
    result: TrialResult,
    db: str,
) -> None:
    """Start one process per kind of work, wait until each has begun, then SIGKILL each at
    its own seeded moment within `window` (unless it has finished)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = result.workers
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                BOOT,
                kind,
                db,
                str(folder),
                f"{seed}:{trial}:{first + index}",
                f"w{first + index}",
                str(SCALE),
                sc.backend,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for index, kind in enumerate(kinds)
    ]
    result.workers += len(procs)
    delays = [rng.uniform(*window) for _ in procs]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()  # "go": the engine is open, the work begins now
    begun = time.monotonic()
    for delay, proc in sorted(zip(delays, procs, strict=True), key=lambda pair: pair[0]):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, begun + delay - time.monotonic()))
        if proc.poll() is None:
            result.killed_mid_work += 1
            os.kill(proc.pid, signal.SIGKILL)
    for index, proc in enumerate(procs):
        _, err = proc.communicate(timeout=120)
        if proc.returncode not in (0, -signal.SIGKILL):
            (folder / f"worker-{first + index}.err").write_text(err)
            tail = err.strip().splitlines()[-1:] or ["(no output)"]
            result.violations.append(f"worker {first + index} ({kinds[index]}) crashed: {tail[0]}")


def run_trial(
    trial: int, seed: int, folder: Path, scenario: str | None = None, db: str | None = None
) -> TrialResult:
    """One trial, reproducible from (seed, trial): the scenario, the workers' seeds and the
    moments of the kills all come from one seeded generator. `db`: the store (by default an
    SQLite file in `folder`; with a PostgreSQL URL, HVKUBE_DATA_DIR must name `folder`)."""
    started = time.monotonic()
    rng = random.Random(f"{seed}:{trial}")
    names = sorted(SCENARIOS)
    sc = SCENARIOS[scenario or names[trial % len(names)]]
    result = TrialResult(trial=trial, scenario=sc.name, seed=f"{seed}:{trial}")
    folder.mkdir(parents=True, exist_ok=True)
    db = db or str(folder / "hvkube.db")
    _setup(db, sc)

    _phase(sc, sc.workers, sc.window, rng, seed, trial, folder, result, db)
    if sc.then:
        _phase(sc, sc.then, sc.then_window, rng, seed, trial, folder, result, db)

    # Restart: a new process reconciles and checks (on the simulated host behind the workers'
    # fake PowerShell host, when they used one).
    with open_engine(db=db, backend="sim", sim_scale=0, backend_switch=True) as engine:
        report = engine.reconcile()
        journal = Journal.read(folder)
        result.fixed_by_reconcile = len(report.fixed)
        result.reported_missing = len(report.missing)
        result.reported_orphans = len(report.orphans)
        result.claims = sum(1 for c in journal.claims if c["ev"] == "claim")
        result.agents = len(journal.submitted)
        result.violations += [f"reconcile error: {e}" for e in report.errors]
        result.violations += [f"{b}: busy after every process ended" for b in report.busy]
        result.violations += check_invariants(engine, journal, report, errors_allowed=False)
        _restart(engine, sc, result)
    result.seconds = time.monotonic() - started
    return result


def run_trials(
    trials: int,
    seed: int,
    root: Path,
    parallel: int = 2,
    scenario: str | None = None,
    on_result: Any = None,
) -> list[TrialResult]:
    from concurrent.futures import ThreadPoolExecutor

    def one(trial: int) -> TrialResult:
        try:
            res = run_trial(trial, seed, root / f"trial-{trial:04d}", scenario)
        except Exception as exc:  # a harness or engine failure is a finding too
            names = sorted(SCENARIOS)
            res = TrialResult(
                trial=trial,
                scenario=scenario or names[trial % len(names)],
                seed=f"{seed}:{trial}",
                violations=[f"trial failed: {type(exc).__name__}: {exc}"],
            )
        if on_result is not None:
            on_result(res)
        return res

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, range(trials)))
