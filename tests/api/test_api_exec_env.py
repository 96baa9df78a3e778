"""The API's pool and agent routes take the names of the controller's variables an agent's
command gets: stored as names, shown back, and a bad name refused with nothing changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def exec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("api-exec"), "--allow-exec")
    yield srv
    stop_server(srv)


@pytest.fixture()
def api(exec_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=exec_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {exec_server.token}"},
        timeout=30,
    ) as c:
        yield c


def rows(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_pool_and_agent_names_are_stored_and_shown(api: httpx.Client) -> None:
    assert (
        api.post("/templates", json={"name": "w", "disk_path": r"C:\t\w.vhdx"}).status_code == 201
    )
    made = api.post(
        "/pools",
        json={"name": "envp", "template": "w", "count": 0, "warm": 0, "exec_env": ["HTTPS_PROXY"]},
    )
    assert made.status_code == 201, made.text
    assert made.json()["exec_env"] == ["HTTPS_PROXY"]
    edited = api.patch("/pools/envp", json={"exec_env": ["A", "B"]})
    assert edited.status_code == 200, edited.text
    assert api.get("/pools/envp").json()["exec_env"] == ["A", "B"]
    assert api.patch("/pools/envp", json={"count": 0}).json()["exec_env"] == ["A", "B"]
    agent = api.post(
        "/agents",
        json={"pool": "envp", "workflow": "w", "exec_command": "env", "exec_env": ["AWS_PROFILE"]},
    )
    assert agent.status_code == 201, agent.text
    assert agent.json()["task"]["exec_env"] == ["AWS_PROFILE"]
    assert api.get(f"/agents/{agent.json()['id']}").json()["task"]["exec_env"] == ["AWS_PROFILE"]


@pytest.mark.parametrize("bad", ["A=B", "", "1X", "A B"])
def test_a_bad_name_is_refused_and_changes_nothing(
    api: httpx.Client, exec_server: Server, bad: str
) -> None:
    api.post("/templates", json={"name": "w", "disk_path": r"C:\t\w.vhdx"})
    api.post("/pools", json={"name": "envq", "template": "w", "count": 0, "warm": 0})
    before = rows(exec_server.db)
    answers = [
        api.post(
            "/pools", json={"name": "n2", "template": "w", "count": 0, "warm": 0, "exec_env": [bad]}
        ),
        api.patch("/pools/envq", json={"exec_env": ["OK", bad]}),
        api.post(
            "/agents",
            json={"pool": "envq", "workflow": "w", "exec_command": "env", "exec_env": [bad]},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "not an environment variable name" in answer.json()["message"]
    assert rows(exec_server.db) == before
