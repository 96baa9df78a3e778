"""Running the API with uvicorn (`hvkube serve`)."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence

import uvicorn

from core.api.app import make_api
from core.api.guard import connection_cap, guarded_protocol
from core.errors import InvalidInput
from core.settings import Settings
from core.tokens import admin_token, live_tokens, no_token_refusal, token_path

# A whole request must arrive within this long of opening a connection (or of the answer
# before it); beyond MAX_CONNECTIONS open connections, new ones get a 503 at once.
REQUEST_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 4096


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, tls: bool) -> str | None:
    """The warning printed when the API listens beyond this machine without TLS."""
    if is_loopback(host) or tls:
        return None
    return (
        f"warning: serving on {host}, beyond this machine, without TLS: the bearer token "
        "and all traffic travel in clear. Put a TLS proxy in front, or use --tls-cert/--tls-key"
    )


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so that port 0 gives a port we can print."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"--host {host!r} cannot be resolved: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _store_tokens(settings: Settings) -> int:
    """The store's live scoped tokens. Opening the engine here, before the token file is
    made or the port bound, refuses a bad store or data folder with its one line (the
    server's own opening, later, could only fail its start-up)."""
    from core import open_engine

    with open_engine(settings) as engine:
        return live_tokens(engine.store)


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    lease_seconds: float = 600.0,
    sweep_seconds: float = 1.0,
    allow_exec: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    access_log: bool = False,
    require_lease: bool = False,
    cors_origins: Sequence[str] = (),
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    """Serve until interrupted (Ctrl+C or SIGTERM)."""
    if (tls_cert is None) != (tls_key is None):
        raise InvalidInput("--tls-cert and --tls-key go together; give both or neither")
    path = token_path(settings)
    tokens = _store_tokens(settings)
    token = admin_token(settings)
    if token is None and not tokens:
        raise no_token_refusal(path)
    app = make_api(
        settings,
        lease_seconds=lease_seconds,
        sweep_seconds=sweep_seconds,
        allow_exec=allow_exec,
        token=token,
        require_lease=require_lease,
        cors_origins=cors_origins,
    )
    cap = connection_cap(max_connections)
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    scheme = "https" if tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    warning = exposure_warning(host, tls=tls_cert is not None)
    if warning:
        say(warning)
    where = f"bearer token in {path}" if token else "tokens of the store only: no token file"
    say(f"hvkube API on {scheme}://{shown}:{bound_port} ({where})")
    config = uvicorn.Config(
        app,
        host=host,
        port=bound_port,
        log_level="info",
        access_log=access_log,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        timeout_graceful_shutdown=5,
        lifespan="on",
        http=guarded_protocol(request_timeout_s, cap),
        backlog=min(2048, cap),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
