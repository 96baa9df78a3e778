"""The QMP client against a scripted fake monitor (no QEMU needed)."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.backends.qemu.qmp import QMPClient, QMPError
from core.errors import BackendError, OperationTimeout

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}}
Handler = Callable[[dict, Callable[[dict], None]], None]


@pytest.fixture
def fake_monitor() -> Iterator[Callable[[Handler], str]]:
    tmp = tempfile.TemporaryDirectory(prefix="qmp-")
    servers: list[socket.socket] = []

    def start(handler: Handler) -> str:
        path = str(Path(tmp.name) / "qmp.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        servers.append(server)

        def serve() -> None:
            conn, _ = server.accept()
            with conn:

                def send(message: dict) -> None:
                    conn.sendall(json.dumps(message).encode() + b"\r\n")

                send(GREETING)
                for line in conn.makefile("rb"):
                    handler(json.loads(line), send)

        threading.Thread(target=serve, daemon=True).start()
        return path

    yield start
    for server in servers:
        server.close()
    tmp.cleanup()


def answer(request: dict, send: Callable[[dict], None]) -> None:
    if request["execute"] == "query-status":
        send({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}})
        send({"return": {"status": "paused", "running": False}, "id": request["id"]})
    elif request["execute"] == "bogus":
        send({"error": {"class": "CommandNotFound", "desc": "no bogus"}, "id": request["id"]})
    elif request["execute"] == "hang":
        pass
    else:
        send({"return": {}, "id": request.get("id")})


def test_greeting_capabilities_and_events_between_returns(fake_monitor) -> None:
    with QMPClient(fake_monitor(answer), vm="v") as qmp:
        assert qmp.greeting["QMP"]["version"]["qemu"]["major"] == 7
        assert qmp.execute("query-status") == {"status": "paused", "running": False}
        assert [e["event"] for e in qmp.events] == ["STOP"]
        assert qmp.wait_event("STOP", 1.0)["event"] == "STOP"


def test_error_answer_raises_with_class(fake_monitor) -> None:
    with QMPClient(fake_monitor(answer), vm="v") as qmp, pytest.raises(QMPError) as info:
        qmp.execute("bogus")
    assert info.value.error_class == "CommandNotFound"
    assert "no bogus" in str(info.value)


def test_unanswered_command_times_out(fake_monitor) -> None:
    with QMPClient(fake_monitor(answer), vm="v") as qmp:
        with pytest.raises(OperationTimeout):
            qmp.execute("hang", timeout_s=0.2)
        # A late or stray answer with another id is skipped, not taken as this one's.
        assert qmp.execute("cont") == {}


def test_unreachable_socket_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot reach"):
        QMPClient(str(tmp_path / "none.sock")).connect()
