"""A Grafeas server test double, for the ``grafeas`` store only (no Grafeas server installs here).

It follows the published Grafeas API (``grafeas/grafeas`` ``proto/v1/grafeas.proto`` and the v1beta1 protos, as
served over REST by Container Analysis):

* ``POST /{v1|v1beta1}/projects/{project}/occurrences`` creates an occurrence (``gcloud container binauthz
  attestations create`` does this): the server assigns ``name`` (``projects/{p}/occurrences/{id}``),
  ``createTime`` and ``updateTime``; ``noteName`` must name an existing note, ``kind`` is required, and the
  resource is ``resourceUri`` (v1) or ``resource.uri`` (v1beta1).
* ``GET /{v1|v1beta1}/projects/{project}/occurrences?filter=&pageSize=&pageToken=`` lists them
  (``ListOccurrencesResponse {occurrences[], nextPageToken}``). Filters are conjunctions (``AND``) of
  ``field="value"`` on ``resourceUrl``, ``kind`` and ``noteName`` (the Container Analysis syntax); anything
  else is ``INVALID_ARGUMENT``. ``pageSize`` is capped at 1000 (default ``default_page_size``); page tokens are
  opaque and an unknown one is ``INVALID_ARGUMENT``.
* Errors are ``google.rpc.Status`` JSON (``{"error": {"code", "message", "status"}}``) with the HTTP mapping of
  the canonical codes: 400 ``INVALID_ARGUMENT``, 401 ``UNAUTHENTICATED``, 404 ``NOT_FOUND``, 429
  ``RESOURCE_EXHAUSTED``, 503 ``UNAVAILABLE``.
* With ``token`` set, every request needs ``Authorization: Bearer <token>``.

Simplification: the attestation body is returned in the shape it was created with (v1 or v1beta1); only the
resource field is rendered per API version.

Switches for fault tests: ``fail_next`` (statuses answered to the next requests, in order), ``delay`` (seconds
before answering a list). ``requests`` records ``(method, path, query, authorization)``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import json
import re
import socket
import ssl
import uuid
from typing import Any

import trustme
from aiohttp import web

from tests.support.registry import ServerThread

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_TERM = re.compile(r'^\s*(resourceUrl|kind|noteName)\s*=\s*"([^"]*)"\s*$')
MAX_PAGE_SIZE = 1000


def status_error(code: int, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}}
    return web.json_response(body, status=code)


def parse_filter(text: str) -> dict[str, str] | None:
    """``field="value" AND …`` → ``{field: value}``; ``None`` when the filter is not understood."""
    if not text.strip():
        return {}
    out: dict[str, str] = {}
    for term in re.split(r"\s+AND\s+", text.strip()):
        m = _TERM.match(term)
        if m is None or m.group(1) in out:
            return None
        out[m.group(1)] = m.group(2)
    return out


class GrafeasDouble(ServerThread):
    thread_name = "grafeas-double"

    def __init__(self, *, token: str | None = None, tls: bool = True, default_page_size: int = 100) -> None:
        super().__init__()
        self.token = token
        self.tls = tls
        self.default_page_size = default_page_size
        self.ca = trustme.CA(organization_name="grafeas-double") if tls else None
        self.projects: set[str] = set()
        self.notes: set[str] = set()
        self.occurrences: dict[str, list[dict[str, Any]]] = {}
        self.fail_next: list[int] = []
        self.delay = 0.0
        self.requests: list[tuple[str, str, str, str | None]] = []

    # -- set-up ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def ca_pem(self) -> bytes:
        assert self.ca is not None
        return self.ca.cert_pem.bytes()

    def add_note(self, name: str) -> None:
        project = name.split("/")[1]
        self.projects.add(project)
        self.notes.add(name)

    def add_project(self, project: str) -> None:
        self.projects.add(project)
        self.occurrences.setdefault(project, [])

    def reset(self) -> None:
        self.fail_next.clear()
        self.delay = 0.0
        self.requests.clear()

    async def _start(self) -> None:
        if not self.tls:
            await super()._start()
            return
        assert self.ca is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ctx).start()
        self._runner = runner

    # -- API -----------------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(r"/{version:v1|v1beta1}/projects/{project}/occurrences", self._list)
        app.router.add_post(r"/{version:v1|v1beta1}/projects/{project}/occurrences", self._create)
        return app

    def _gate(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization")
        self.requests.append((request.method, request.path, request.query_string, auth))
        if self.fail_next:
            code = self.fail_next.pop(0)
            return status_error(code, f"injected {_STATUS.get(code, code)}")
        if self.token is not None and auth != f"Bearer {self.token}":
            return status_error(401, "Request had invalid authentication credentials.")
        if request.match_info["project"] not in self.projects:
            return status_error(404, f"project {request.match_info['project']!r} not found")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        version, project = request.match_info["version"], request.match_info["project"]
        try:
            body = await request.json()
        except ValueError:
            return status_error(400, "body is not JSON")
        if not isinstance(body, dict):
            return status_error(400, "occurrence must be an object")
        uri = body.get("resourceUri") if version == "v1" else (body.get("resource") or {}).get("uri")
        if not isinstance(uri, str) or not uri:
            return status_error(400, "resource is required")
        if body.get("noteName") not in self.notes:
            return status_error(400, f"note {body.get('noteName')!r} does not exist")
        if not body.get("kind"):
            return status_error(400, "kind is required")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        stored = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("resource", "resourceUri", "name")}
        stored.update(name=f"projects/{project}/occurrences/{uuid.uuid4()}", uri=uri, createTime=now, updateTime=now)
        self.occurrences.setdefault(project, []).append(stored)
        return web.json_response(self._render(stored, version))

    @staticmethod
    def _render(stored: dict[str, Any], version: str) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in stored.items() if k != "uri"}
        if version == "v1":
            out["resourceUri"] = stored["uri"]
        else:
            out["resource"] = {"uri": stored["uri"]}
        return out

    async def _list(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        if self.delay:
            await asyncio.sleep(self.delay)
        terms = parse_filter(request.query.get("filter", ""))
        if terms is None:
            return status_error(400, f"invalid filter {request.query.get('filter')!r}")
        try:
            size = int(request.query.get("pageSize", self.default_page_size))
            start = (
                int(base64.urlsafe_b64decode(request.query["pageToken"]).decode())
                if "pageToken" in request.query
                else 0
            )
        except (ValueError, UnicodeDecodeError):
            return status_error(400, "invalid pageSize or pageToken")
        size = max(1, min(size, MAX_PAGE_SIZE))
        keys = {"resourceUrl": "uri", "kind": "kind", "noteName": "noteName"}
        matching = [
            o
            for o in self.occurrences.get(request.match_info["project"], [])
            if all(o.get(keys[field]) == value for field, value in terms.items())
        ]
        page = matching[start : start + size]
        body: dict[str, Any] = {}  # proto3 JSON omits empty fields: no occurrences gives {}
        if page:
            body["occurrences"] = [self._render(o, request.match_info["version"]) for o in page]
        if start + size < len(matching):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")
