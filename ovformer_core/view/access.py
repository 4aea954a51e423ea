"""Who may talk to a viewer: the token and the Host check.

Every server has a random token. Bound to a loopback address (the default), its pages open without
it (the page carries it) but every ``/api/`` request must present it, in the ``X-OVFormer-Token``
header or the cookie, which a web page of another site cannot do (cross-site request forgery); and
the ``Host`` header must name the loopback address, so a site that re-points its own domain name at
127.0.0.1 (DNS rebinding) is refused too. Bound to any other address, every request needs the token:
the printed URL carries it as ``?token=``, and the page then keeps it in a ``SameSite=Strict``,
HttpOnly cookie.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: Header and cookie that carry the token.
TOKEN_HEADER = "X-OVFormer-Token"
TOKEN_COOKIE = "ovformer_token"
#: Host names a loopback-bound server answers to.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def new_token() -> str:
    """A fresh random token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name part of a ``Host`` header (``127.0.0.1:8765`` -> ``127.0.0.1``, ``[::1]:80`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class AccessGuard:
    """Starlette HTTP middleware enforcing the rules of the module docstring.

    Args:
        token: the server's token.
        loopback: the server is bound to a loopback address.
    """

    def __init__(self, token: str, loopback: bool) -> None:
        self.token = token
        self.loopback = loopback

    def _presented(self, request: Request) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the URL."""
        header = request.headers.get(TOKEN_HEADER)
        if header:
            return header, False
        cookie = request.cookies.get(TOKEN_COOKIE)
        if cookie:
            return cookie, False
        return request.query_params.get("token"), True

    async def __call__(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if self.loopback and _host_name(request.headers.get("host", "")).lower() not in LOOPBACK_NAMES:
            return JSONResponse(
                {"error": "this viewer answers only to localhost / 127.0.0.1; open the URL it printed"},
                status_code=403,
            )
        needs_token = request.url.path.startswith("/api/") or not self.loopback
        presented, in_url = self._presented(request)
        valid = presented is not None and secrets.compare_digest(presented.encode(), self.token.encode())
        if needs_token and not valid:
            what = "a missing" if presented is None else "a wrong"
            return JSONResponse(
                {"error": f"{what} access token; open the URL `ovformer view` printed (it carries the token)"},
                status_code=401,
            )
        response = await call_next(request)
        if valid and in_url and not self.loopback:
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        return response
