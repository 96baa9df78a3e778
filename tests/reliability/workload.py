"""The work a crash trial kills: run in a child process, it prints "go" once the engine is open,
then works until it is killed (or, for provisioning, until the pool is built).

    python -c BOOT KIND DB FOLDER SEED WORKER SCALE BACKEND
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from pathlib import Path

from core import open_engine
from core.engine import Engine
from core.errors import Conflict, HvkubeError, NotFound, NoVMAvailable
from core.models import AgentStatus

from .journal import JournalWriter

POOL = "p"


def _still_mine(engine: Engine, journal: JournalWriter, vm: str, holder: str) -> bool:
    try:
        now = engine.get_vm(vm)
    except NotFound:
        journal.write("lost", vm=vm, holder=holder, why="deleted")
        return False
    if now.holder != holder:
        journal.write("lost", vm=vm, holder=holder, why=f"holder is now {now.holder}")
        return False
    return True


def agents(engine: Engine, journal: JournalWriter, rng: random.Random, worker: str) -> None:
    """Agents and plain leases, one after another: submit, acquire, give back (pool policy:
    reset), with every step journaled."""
    n = 0
    while True:
        n += 1
        as_agent = rng.random() < 0.6
        agent_id = None
        holder = f"lease-{worker}-{n}"
        if as_agent:
            key = f"wf-{worker}-{n}"
            journal.write("intent", key=key)
            agent_id = engine.submit_agent(POOL, key, {"n": n}).id
            journal.write("submitted", key=key, id=agent_id)
            holder = f"agent-{agent_id}"
        try:
            vm = engine.acquire(POOL, wait_s=5, holder=holder, agent_id=agent_id)
        except NoVMAvailable:
            if agent_id is not None:
                engine.cancel_agent(agent_id)
            continue
        except HvkubeError as exc:
            journal.write("error", op="acquire", why=str(exc))
            if agent_id is not None:
                engine.cancel_agent(agent_id)
            continue
        journal.claim(vm.name, holder)
        if not _still_mine(engine, journal, vm.name, holder):
            continue
        journal.unclaim(vm.name, holder)
        try:
            if agent_id is not None:
                engine.finish_agent(agent_id, AgentStatus.COMPLETED)
            else:
                policy = rng.choice(["reset", "reset", "save"])
                engine.release(vm.name, policy=policy, holder=holder)
        except (Conflict, NotFound) as exc:
            journal.write("lost", vm=vm.name, holder=holder, why=f"release refused: {exc}")


def scale(engine: Engine, journal: JournalWriter, rng: random.Random, worker: str) -> None:
    """Scale the pool down first, then to random sizes."""
    target = 2
    while True:
        hot = 1 if target >= 4 else 0
        engine.update_pool(POOL, count=target, warm=min(3, target - hot), hot=hot)
        report = engine.scale_pool(POOL, target)
        journal.write("scaled", count=target, failed=len(report.failed))
        target = rng.randint(1, 7)


def provision(engine: Engine, journal: JournalWriter, rng: random.Random, worker: str) -> None:
    engine.provision_pool(POOL, parallelism=3)
    journal.write("provisioned")


def submit(engine: Engine, journal: JournalWriter, rng: random.Random, worker: str) -> None:
    """Agents for the controller to run: commands that succeed, fail, take a while, or wait
    for an outside completion; some are cancelled while they run."""
    n = 0
    while True:
        n += 1
        key = f"wf-{worker}-{n}"
        command = rng.choice(["true", "sleep 0.05", "sleep 0.3", "exit 1", None])
        journal.write("intent", key=key)
        agent = engine.submit_agent(POOL, key, {"n": n}, timeout_s=60, exec_command=command)
        journal.write("submitted", key=key, id=agent.id)
        time.sleep(rng.uniform(0.0, 0.15))
        if rng.random() < 0.3:
            running = engine.list_agents(status=AgentStatus.RUNNING, pool=POOL, limit=50)
            if running:
                with contextlib.suppress(Conflict):
                    engine.cancel_agent(rng.choice(running).id)


def controller(db: str, scale_text: str) -> int:
    """`hvkube run`: the controller, as an operator starts it."""
    from core.cli import main as cli

    os.environ["HVKUBE_SIM_SCALE"] = scale_text
    print("go", flush=True)
    return cli(["--db", db, "--backend", "sim", "run", "--tick", "0.05", "--grace", "0.2"])


def reconcile(engine: Engine, journal: JournalWriter, rng: random.Random, worker: str) -> None:
    report = engine.reconcile()
    journal.write("reconciled", fixed=len(report.fixed))


KINDS = {
    "agents": agents,
    "scale": scale,
    "provision": provision,
    "submit": submit,
    "reconcile": reconcile,
}


def _open(db: str, folder: str, scale_text: str, backend: str) -> Engine:
    if backend == "sim":
        return open_engine(db=db, backend="sim", sim_scale=float(scale_text))
    from tests.fakes.fakeps import python_fake_command

    # The Hyper-V backend's real sessions, framing and parsing, over the fake host.
    command = python_fake_command("--state-dir", folder, "--sim-scale", scale_text)
    return open_engine(
        db=db,
        backend="hyperv",
        # The fake host answers from the simulated host the store was built on: same VMs.
        backend_switch=True,
        powershell=command,
        hyperv_sessions=2,
        op_timeout_s=60,
        ready_timeout_s=60,
    )


def main(argv: list[str]) -> int:
    kind, db, folder, seed, worker, scale_text, backend = argv
    if kind == "controller":
        return controller(db, scale_text)
    rng = random.Random(seed)
    journal = JournalWriter(Path(folder) / f"journal-{worker}.jsonl", worker)
    with _open(db, folder, scale_text, backend) as engine:
        engine.backend.list_vms()  # a PowerShell session is up before the clock starts
        print("go", flush=True)
        KINDS[kind](engine, journal, rng, worker)
    return 0


if __name__ == "__main__":  # pragma: no cover - run through BOOT
    raise SystemExit(main(sys.argv[1:]))
