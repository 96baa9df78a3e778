"""The OpenAPI document fuzzed against a live server: no request may get a 5xx answer.

Bounded: a fixed number of examples per operation and a time budget. Path and body
values are drawn partly from real objects (a provisioned pool, its VMs, agents and
leases), so the fuzzing reaches the engine and not only the 404 paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import open_engine
from core.settings import Settings
from tests.api.conftest import api_env, start_server, stop_server

MAX_EXAMPLES = 15
TIME_BUDGET_S = 45


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    srv = start_server(tmp_path_factory.mktemp("fuzz"), "--sweep-seconds", "0.5")
    yield srv
    stop_server(srv)


def seed_objects(server: Any) -> dict[str, list[Any]]:
    """A pool with VMs, agents and leases for the fuzzer to find."""
    with open_engine(Settings(db=str(server.db), backend="sim", sim_scale=0.0)) as engine:
        engine.create_template("win11", "C:\\templates\\win11.vhdx", gpu=True)
        engine.create_pool("fz", "win11", 4, hot=2)  # a GPU pool: hot or cold, never saved
        assert not engine.provision_pool("fz").failed
        agents = [engine.submit_agent("fz", "wf").id for _ in range(3)]
    headers = {"Authorization": f"Bearer {server.token}"}
    lease = httpx.post(
        f"{server.url}/api/v1/acquire", json={"pool": "fz"}, headers=headers, timeout=30
    ).json()["lease_id"]
    return {
        "vms": ["fz-001", "fz-002", "fz-003", "fz-004", "fz"],
        "pools": ["fz"],
        "agents": agents,
        "leases": [lease],
        # Acquire waits stay short (a long wait on a busy pool outlasts the request timeout),
        # and most leases are short, so fuzzed acquires give their VMs back soon.
        "waits": [0, 0.2, 1],
        "lease_lengths": [1, 2, 5],
        # Pool sizes stay small: building 1,000 VMs is a legitimate request that outlasts
        # the request timeout.
        "counts": [0, 1, 2, 4],
    }


def write_config(path: Path, seeds: dict[str, list[Any]]) -> None:
    lines = [
        f"generation.max-examples = {MAX_EXAMPLES}",
        "request-timeout = 10.0",
        'headers = { Authorization = "Bearer ${HVKUBE_FUZZ_TOKEN}" }',
        "",
    ]
    for name, values in seeds.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines += [
        "[parameters]",
        '"path.name" = { dictionary = "vms", probability = 0.7 }',
        '"path.agent_id" = { dictionary = "agents", probability = 0.7 }',
        '"path.lease_id" = { dictionary = "leases", probability = 0.7 }',
        '"body.pool" = { dictionary = "pools", probability = 0.7 }',
        '"query.pool" = { dictionary = "pools", probability = 0.5 }',
        '"body.wait_seconds" = { dictionary = "waits", probability = 1.0 }',
        '"body.lease_seconds" = { dictionary = "lease_lengths", probability = 0.8 }',
        '"body.count" = { dictionary = "counts", probability = 1.0 }',
        '"body.desired_count" = { dictionary = "counts", probability = 1.0 }',
        "",
        "# 503 with Retry-After is the documented answer when no VM is free within the wait",
        "[[operations]]",
        'include-path = "/api/v1/acquire"',
        'checks.not_a_server_error.expected-statuses = ["2XX", "4XX", 503]',
        "",
        "# Building VMs: 503 when the host is full; 502 naming the VMs that failed",
        "[[operations]]",
        'include-path-regex = "/api/v1/pools/[^/]+/(provision|scale|prepare)"',
        'checks.not_a_server_error.expected-statuses = ["2XX", "4XX", 502, 503]',
        "",
        "# Scaling to up to 1,024 VMs (the coverage phase's boundary values) is a legitimate",
        "# request that takes longer than any request timeout here; test_api_manage.py covers it",
        "[[operations]]",
        'include-path-regex = "/api/v1/pools/[^/]+/(provision|scale)$"',
        "enabled = false",
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_openapi_fuzz_finds_no_server_error(fuzz_server: Any, tmp_path: Path) -> None:
    seeds = seed_objects(fuzz_server)
    config = tmp_path / "schemathesis.toml"
    write_config(config, seeds)
    env = {**api_env(fuzz_server.data_dir), "HVKUBE_FUZZ_TOKEN": fuzz_server.token}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{fuzz_server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-time",
            str(TIME_BUDGET_S),
            # One worker: CPython 3.11's AST construction is not thread-safe
            # ("AST constructor recursion depth mismatch"), and schemathesis parses
            # source in its workers.
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=tmp_path,
        timeout=TIME_BUDGET_S + 120,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout, report
    # the server logged no internal error either
    assert "Traceback" not in fuzz_server.log.read_text(errors="replace"), report
