"""Long-lived PowerShell sessions running the dispatcher script, and the wire protocol.

Protocol (one line each way, UTF-8, newline-terminated):

    -> HVKUBE-REQ {"id": "<nonce>", "op": "<operation>", "data": {...}}
    <- HVKUBE-RES <nonce> {"ok": true, "result": ...}
    <- HVKUBE-RES <nonce> {"ok": false, "error": {"message", "fqid", "category", "type", ...}}

At start the dispatcher writes `HVKUBE-READY {"protocol": 2, ...}`, which also says
what the session may do and where it runs: `"elevated": bool`, `"hyperVAdmin": bool` (a
member of Hyper-V Administrators, S-1-5-32-578) and `"osVersion": "10.0.17763"`; a field
that is missing is unknown. Requests are
ASCII-only JSON (`ensure_ascii`), so the console input encoding never matters.
Any other output line (a BOM, a banner, a stray `Write-Host`) is noise: a
response is only accepted when it carries the nonce of the pending request.
stderr is drained on its own thread and only used to explain a failure.

A session that dies, hangs past the call's timeout or answers with a broken
frame is killed; the pool starts a fresh one for the next call. Read-only
operations are retried once on a fresh session.
"""

from __future__ import annotations

import collections
import contextlib
import html
import io
import json
import os
import queue
import re
import secrets
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.backends.hyperv.errors import MODULE_HINT, ErrorRecord, SessionRights
from core.backends.hyperv.host_check import host_problem
from core.errors import BackendError, OperationTimeout, Unsupported

PROTOCOL = 2
MARK_REQUEST = "HVKUBE-REQ"
MARK_RESPONSE = "HVKUBE-RES"
MARK_READY = "HVKUBE-READY"
DISPATCHER = Path(__file__).with_name("dispatcher.ps1")
# How long a session that died is given to exit and to hand over the rest of its stderr
# (the reason it died): plenty on a loaded host, and nothing when it is already gone.
LOST_WAIT_S = 5.0
# The longest answer line read: a bounded screenshot is about 6 MB of base64.
MAX_LINE_BYTES = 32 * 1024 * 1024


class SessionLost(BackendError):
    """The PowerShell process ended (or could not be written to) during a call."""


class MalformedResponse(BackendError):
    """The session answered the pending request with a frame that is not valid JSON."""


class RemoteError(Exception):
    """The dispatcher ran the operation and it failed: an error record came back."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(record.message)
        self.record = record


def split_command(command: str) -> list[str]:
    """The configured PowerShell command line as argv (Windows quoting rules on Windows)."""
    if os.name == "nt":
        parts = [p.strip('"') for p in re.findall(r'"[^"]*"|\S+', command)]
    else:
        parts = shlex.split(command)
    if not parts:
        raise Unsupported("the PowerShell command line is empty; set 'powershell' in the config")
    return parts


def dispatcher_argv(command: str, script: Path = DISPATCHER) -> list[str]:
    """The full command: the configured PowerShell, then `-File <dispatcher.ps1>`."""
    return [*split_command(command), "-File", str(script)]


def _flag(value: Any) -> bool | None:
    """A READY flag: JSON true/false (or their text); anything else is unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def session_rights(info: Mapping[str, Any]) -> SessionRights:
    """The rights a READY frame reports: `elevated`, `hyperVAdmin`; missing = unknown."""
    return SessionRights(
        elevated=_flag(info.get("elevated")), hyperv_admin=_flag(info.get("hyperVAdmin"))
    )


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text.lstrip("\ufeff").rstrip("\r\n")


# A string of a CLIXML document; the last one may be cut off by the end of what was kept.
_CLIXML_STRING = re.compile(r"<S S=\"[^\"]*\">(.*?)(?:</S>|\Z)", re.S)
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_CLIXML_START = ("<Objs", "<Obj ", "<S S=")


def _clixml_strings(document: str) -> list[str]:
    """The strings of a CLIXML document (or of what is left of one), as readable text."""
    parts = _CLIXML_STRING.findall(document)
    if not document.startswith("<") and "</S>" in document:
        parts.insert(0, document.split("</S>", 1)[0])  # a string whose start was cut off
    out = []
    for part in parts:
        text = _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), part)
        text = " ".join(html.unescape(text).split())
        if text:
            out.append(text)
    return out


def clean_stderr(lines: Sequence[str]) -> str:
    """stderr as readable text: CLIXML records, on one line or spread over several, are
    reduced to their strings."""
    out: list[str] = []
    document: list[str] | None = None
    for line in lines:
        text = line.strip()
        if text.startswith("#< CLIXML"):
            text = text[len("#< CLIXML") :].strip()
        if document is None and (
            text.startswith(_CLIXML_START) or "</S>" in text or "</Objs>" in text
        ):
            document = []
        if document is not None:
            document.append(text)
            if "</Objs>" in text:
                out.extend(_clixml_strings("\n".join(document)))
                document = None
            continue
        if text:
            out.append(text)
    if document is not None:
        out.extend(_clixml_strings("\n".join(document)))
    return " | ".join(out)[-1500:]


class PowerShellSession:
    """One PowerShell process running the dispatcher. One call at a time."""

    def __init__(self, argv: Sequence[str], *, startup_timeout_s: float = 120.0) -> None:
        self.argv = list(argv)
        self.startup_timeout_s = startup_timeout_s
        self.info: dict[str, Any] = {}
        self.rights = SessionRights()
        self.noise: collections.deque[str] = collections.deque(maxlen=50)
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stderr_reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- process -------------------------------------------------------------------------------

    def start(self) -> None:
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                creationflags=flags,
            )
        except FileNotFoundError:
            raise Unsupported(
                f"cannot start PowerShell: {self.argv[0]!r} was not found. The Hyper-V backend "
                "needs Windows PowerShell or pwsh; set 'powershell' in the config or "
                "HVKUBE_POWERSHELL",
                operation="session_start",
            ) from None
        except OSError as exc:
            raise BackendError(
                f"cannot start PowerShell ({self.argv[0]!r}): {exc}", operation="session_start"
            ) from None
        proc = self._proc
        threading.Thread(target=self._read_stdout, args=(proc,), daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, args=(proc,), daemon=True)
        self._stderr_reader.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            line = self._next_line(deadline, "session_start")
            if line.startswith(MARK_READY + " "):
                try:
                    info = json.loads(line[len(MARK_READY) + 1 :])
                except json.JSONDecodeError:
                    info = None
                if not isinstance(info, dict) or info.get("protocol") != PROTOCOL:
                    self.kill()
                    raise BackendError(
                        f"the PowerShell dispatcher speaks another protocol: {line[:200]!r}",
                        operation="session_start",
                    )
                problem = host_problem(info)
                if problem is not None:
                    self.kill()
                    raise Unsupported(problem, operation="session_start")
                self.info = info
                self.rights = session_rights(info)
                return
            self.noise.append(line)

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        # The pipe is unbuffered (bufsize=0, for the writes): read it through a buffer, or
        # readline takes one system call a byte (seconds for a screenshot's line).
        reader = io.BufferedReader(proc.stdout, buffer_size=1 << 16)  # type: ignore[type-var]
        try:
            while raw := reader.readline(MAX_LINE_BYTES):
                if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    # Longer than any answer: dropped to its end, never held whole.
                    while (rest := reader.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    raw = b"(an over-long line was dropped)\n"
                self._lines.put(raw)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        try:
            for raw in iter(proc.stderr.readline, b""):
                self._stderr.append(_decode(raw))
        except (OSError, ValueError):
            pass

    def stderr_text(self) -> str:
        return clean_stderr(list(self._stderr))

    def kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """End the session: stdin EOF ends the dispatcher's loop; kill it if it lingers."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3)
        self.kill()

    # -- calls ---------------------------------------------------------------------------------

    def _lost(self, op: str) -> SessionLost:
        proc = self._proc
        code = None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=LOST_WAIT_S)
        # The process has ended: its stderr reader reaches EOF once it has read everything.
        if self._stderr_reader is not None:
            self._stderr_reader.join(timeout=LOST_WAIT_S)
        detail = self.stderr_text()
        text = f"the PowerShell session ended during '{op}' (exit code {code})"
        if detail:
            text += f": {detail}"
        return SessionLost(text, operation=op, raw=detail or None)

    def _next_line(self, deadline: float, op: str) -> str:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise OperationTimeout(
                    f"PowerShell did not answer '{op}' in time; the session was stopped "
                    "and a new one will be started",
                    operation=op,
                )
            try:
                raw = self._lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if raw is None:
                self._lines.put(None)  # keep the end marker for anyone reading later
                raise self._lost(op)
            return _decode(raw)

    def call(self, op: str, data: dict[str, Any], timeout_s: float) -> Any:
        """Run one dispatcher operation. Raises RemoteError for an error record."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise SessionLost("the PowerShell session is not running", operation=op)
            nonce = secrets.token_hex(8)
            frame = json.dumps(
                {"id": nonce, "op": op, "data": data}, ensure_ascii=True, separators=(",", ":")
            )
            try:
                proc.stdin.write(f"{MARK_REQUEST} {frame}\n".encode("ascii"))
                proc.stdin.flush()
            except (OSError, ValueError):
                raise self._lost(op) from None
            deadline = time.monotonic() + timeout_s
            prefix = f"{MARK_RESPONSE} {nonce} "
            while True:
                line = self._next_line(deadline, op)
                if not line.startswith(prefix):
                    self.noise.append(line[:500])
                    continue
                try:
                    message = json.loads(line[len(prefix) :])
                except json.JSONDecodeError:
                    message = None
                if not isinstance(message, dict) or not isinstance(message.get("ok"), bool):
                    self.kill()
                    raise MalformedResponse(
                        f"PowerShell answered '{op}' with a malformed response; the session "
                        "was stopped and a new one will be started",
                        operation=op,
                        raw=line[:2000],
                    )
                if message["ok"]:
                    return message.get("result")
                record = ErrorRecord.from_json(message.get("error"))
                record.rights = self.rights
                raise RemoteError(record)


class SessionPool:
    """Up to `size` sessions shared by many threads, plus per-key locks.

    Operations that name the same lock keys (a VM, a disk file) run one at a
    time; others run in parallel on different sessions.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        size: int = 4,
        op_timeout_s: float = 600.0,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.argv = list(argv)
        self.size = max(1, size)
        self.op_timeout_s = op_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._idle: list[PowerShellSession] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        self._key_locks: dict[str, threading.Lock] = {}
        self._key_guard = threading.Lock()
        self.restarts = 0

    @contextlib.contextmanager
    def locked(self, keys: Sequence[str]) -> Iterator[None]:
        """Hold the locks for `keys`, taken in sorted order so two callers never deadlock."""
        with self._key_guard:
            locks = [self._key_locks.setdefault(k, threading.Lock()) for k in sorted(set(keys))]
        with contextlib.ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            yield

    def _checkout(self) -> PowerShellSession:
        with self._cond:
            while True:
                if self._closed:
                    raise BackendError("the Hyper-V backend is closed")
                while self._idle:
                    session = self._idle.pop()
                    if session.alive:
                        return session
                    session.kill()
                    self._count -= 1
                if self._count < self.size:
                    self._count += 1
                    break
                self._cond.wait()
        session = PowerShellSession(self.argv, startup_timeout_s=self.startup_timeout_s)
        try:
            session.start()
        except BaseException:
            session.kill()
            self._discard(session)
            raise
        if session.info.get("moduleError"):
            message = str(session.info["moduleError"])
            session.close()
            self._discard(session)
            raise Unsupported(f"{message} ({MODULE_HINT})", operation="session_start")
        return session

    def _checkin(self, session: PowerShellSession) -> None:
        with self._cond:
            if self._closed:
                session.close()
                self._count -= 1
            else:
                self._idle.append(session)
            self._cond.notify()

    def _discard(self, session: PowerShellSession) -> None:
        session.kill()
        with self._cond:
            self._count -= 1
            self.restarts += 1
            self._cond.notify()

    def call(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        read_only: bool = False,
        locks: Sequence[str] = (),
    ) -> Any:
        timeout = self.op_timeout_s if timeout_s is None else timeout_s
        attempts = 2 if read_only else 1
        with self.locked(locks):
            for attempt in range(attempts):
                session = self._checkout()
                try:
                    result = session.call(op, data or {}, timeout)
                except RemoteError:
                    self._checkin(session)
                    raise
                except (SessionLost, MalformedResponse, OperationTimeout):
                    self._discard(session)
                    if attempt + 1 < attempts:
                        continue
                    raise
                except BaseException:
                    self._discard(session)
                    raise
                self._checkin(session)
                return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for session in idle:
            session.close()
