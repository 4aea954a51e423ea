"""Starting a viewer: bind the address, print the URL, serve with uvicorn until Ctrl-C."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import uvicorn

from ovformer_core.errors import OVFormerError
from ovformer_core.view.access import is_loopback
from ovformer_core.view.app import ViewerSettings, create_app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port).

    Raises:
        OVFormerError: the port is taken or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise OVFormerError(f"port {port} is in use; pass another with `port` (0 picks a free one)") from None
        raise OVFormerError(f"cannot listen on {host}:{port} ({err.strerror or err}); check `host`") from None
    except (socket.gaierror, OverflowError) as err:
        sock.close()
        raise OVFormerError(f"cannot listen on {host}:{port} ({err}); check `host` and `port`") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(settings: ViewerSettings, port: int, path: str = "/") -> str:
    """The URL to open: the loopback name, or the bound host with ``?token=`` when it is not loopback."""
    host = settings.host if ":" not in settings.host else f"[{settings.host.strip('[]')}]"
    if host in ("0.0.0.0", "[::]"):
        host = socket.gethostname()
    url = f"http://{host}:{port}{path}"
    return url if is_loopback(settings.host) else f"{url}?token={settings.token}"


def serve(settings: ViewerSettings, port: int, announce: Callable[[str], None]) -> None:
    """Serve ``settings`` on ``port`` until interrupted; ``announce`` receives the URL once listening."""
    sock = bind(settings.host, port)
    app = create_app(settings)
    path = app.state.viewer.start_path()
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    announce(url_of(settings, sock.getsockname()[1], path))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
