"""A spec-following OCI 1.1 referrers API test double in front of a real registry.

No registry installable here (Debian ``docker-registry`` = distribution 2.8.2) serves
``GET /v2/<name>/referrers/<digest>``: it answers the router miss ``404 page not found``. The provider's
referrers-API client path can therefore only be exercised against this double. Everything else (blobs,
manifests, tags, auth challenges) is proxied unchanged to the real registry.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from tests.support.content import OCI_INDEX, referrer_descriptor, sha256_digest
from tests.support.registry import ServerThread

__all__ = ["MODES", "ReferrersProxy"]

MODES = frozenset({"normal", "404", "401", "401-always", "429", "slow", "passthrough"})

_REFERRERS_RE = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]*)$")
_MANIFEST_RE = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
_REALM_RE = re.compile(r'realm="([^"]*)"')
_SERVICE_RE = re.compile(r'service="([^"]*)"')
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_STATUS_CODES = {
    400: "UNSUPPORTED",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NAME_UNKNOWN",
    429: "TOOMANYREQUESTS",
}


def _valid_digest(value: str) -> bool:
    if not _DIGEST_RE.match(value):
        return False
    alg, _, enc = value.partition(":")
    expected = _DIGEST_LENGTHS.get(alg)
    return expected is None or (len(enc) == expected and re.fullmatch(r"[a-f0-9]+", enc) is not None)


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _classify(path: str) -> str:
    if path == "/token":
        return "tokens"
    if _REFERRERS_RE.match(path):
        return "referrers"
    if "/manifests/" in path:
        return "manifests"
    if "/blobs/" in path:
        return "blobs"
    if path in ("/v2", "/v2/"):
        return "base"
    return "other"


def _corrupt(body: bytes) -> bytes:
    """Change exactly one byte, keeping the length and, for JSON bodies, the JSON validity.

    The first hex digit after ``sha256:`` is rotated (``0``->``1`` … ``f``->``0``) when present; otherwise
    the last byte is flipped.
    """
    marker = body.find(b"sha256:")
    if marker != -1 and marker + 7 < len(body):
        i = marker + 7
        hexdigits = b"0123456789abcdef"
        pos = hexdigits.find(body[i : i + 1])
        if pos != -1:
            return body[:i] + hexdigits[(pos + 1) % 16 : (pos + 1) % 16 + 1] + body[i + 1 :]
    if not body:
        return b"\x00"
    return body[:-1] + bytes([body[-1] ^ 0x01])


class ReferrersProxy(ServerThread):
    """OCI 1.1 referrers API double proxying everything else to a real registry.

    Behaviour, each from ``opencontainers/distribution-spec:spec.md`` (v1.1):

    * Pushes, §"Pushing Manifests with Subject": "When processing a request for an image manifest with the
      ``subject`` field, a registry implementation that supports the referrers API MUST respond with the
      response header ``OCI-Subject: <subject digest>``". A manifest ``PUT`` whose upstream answer is 201 and
      whose body has ``subject`` is recorded (descriptor digest = sha256 of the exact bytes PUT) and the 201
      gets ``OCI-Subject`` (unless ``send_oci_subject`` is False). A 202 ``DELETE`` by digest forgets it.
    * §"Listing Referrers":
      - "Assuming a repository is found, this request MUST return a ``200 OK`` response code." and "If the
        registry supports the referrers API, the registry MUST NOT return a ``404 Not Found``".
      - "If the request is invalid, such as a ``<digest>`` with an invalid syntax, a ``400 Bad Request`` MUST
        be returned."
      - "The ``Content-Type`` header MUST be set to ``application/vnd.oci.image.index.v1+json``."
      - "Each descriptor is of an image manifest or index in the same ``<name>`` namespace with a ``subject``
        field that specifies the value of ``<digest>``."
      - "The descriptors MUST include an ``artifactType`` field that is set to the value of the
        ``artifactType`` in the image manifest or index, if present. If the ``artifactType`` is empty or
        missing in the image manifest, the value of ``artifactType`` MUST be set to the config descriptor
        ``mediaType`` value. If the ``artifactType`` is empty or missing in an index, the ``artifactType``
        MUST be omitted."
      - "The descriptors MUST include annotations from the image manifest or index."
      - "If a query results in no matching referrers, an empty manifest list MUST be returned."
      - "A ``Link`` header MUST be included in the response when the descriptor list cannot be returned in a
        single manifest." (``page_size``; continuation ``?n=<page_size>&last=<digest>`` — opaque to clients)
      - "If filtering is requested and applied, the response MUST include a header
        ``OCI-Filters-Applied: artifactType``" (``?artifactType=``; ``ignore_filter`` models a registry that
        does not filter: full list, no header, so "the client MUST" filter itself).
      - "If the referrers API returns a 404, the client MUST fallback to pulling the referrers tag schema."
        (``mode = "404"``: plain-text ``404 page not found`` exactly like distribution's router).

    Switches (plain attributes, set from tests; :meth:`reset` restores them):

    * ``mode``: ``"normal"``; ``"404"``; ``"401"`` (Bearer challenge on the referrers path unless the request
      carries ``Authorization: Bearer …``); ``"401-always"`` (challenge even with a token);
      ``"429"`` (``Retry-After: retry_after`` for the next ``throttle_count`` referrers requests, then
      normal); ``"slow"`` (sleep ``delay`` seconds, then normal); ``"passthrough"`` (forward to the real
      registry, which answers 404).
    * ``ignore_filter``, ``page_size`` (``None`` = one page), ``send_oci_subject``.
    * ``corrupt_paths``: a GET whose path is in this set gets one body byte changed (same length, same headers
      incl. ``Docker-Content-Digest``) — digest-mismatch tests.
    * ``status_override``: ``{path substring: (status, headers, count)}`` — the next ``count`` requests whose
      path contains the substring (any method, any path, referrers included) get ``status`` with ``headers``
      and an OCI error body; then the entry is removed and requests pass through. E.g.
      ``{"/manifests/": (503, {}, 2)}`` or ``{"/blobs/": (429, {"Retry-After": "1"}, 1)}``.
    * ``path_delays``: ``{path substring: seconds}`` — sleep before handling any matching request.

    Observation: ``log`` is a list of ``(method, path)`` for every request; ``request_headers`` the matching
    request headers; ``counts`` a ``Counter`` by kind (``referrers``, ``manifests``, ``blobs``, ``tokens``,
    ``base``, ``other``); :meth:`count` filters by kind and method.

    Tokens: with ``rewrite_token_realm`` (default) the realm of upstream ``Bearer`` challenges is rewritten to
    ``<proxy>/token`` and ``/token`` is forwarded to the original realm, so token requests are counted too.
    Without a known upstream realm ``/token`` issues opaque dummy tokens (so the ``"401"`` mode works in front
    of an anonymous registry).
    """

    thread_name = "referrers-proxy"

    def __init__(
        self,
        upstream_url: str,
        *,
        upstream_ssl: ssl.SSLContext | None = None,
        token_upstream: str | None = None,
        rewrite_token_realm: bool = True,
    ) -> None:
        super().__init__()
        self.upstream_url = upstream_url.rstrip("/")
        self.upstream_ssl = upstream_ssl
        self.token_upstream = token_upstream
        self.token_service = "referrers-proxy"
        self.rewrite_token_realm = rewrite_token_realm
        self._session: aiohttp.ClientSession | None = None
        # name -> subject digest -> manifest digest -> descriptor
        self._records: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.log: list[tuple[str, str]] = []
        self.request_headers: list[dict[str, str]] = []
        self.counts: Counter[str] = Counter()
        self._dummy_tokens = 0
        self.reset()

    # switches ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Restore every switch to its default and clear the log and counters (recorded referrers stay)."""
        self.mode = "normal"
        self.ignore_filter = False
        self.page_size: int | None = None
        self.delay = 2.0
        self.retry_after = 1
        self.throttle_count = 1
        self._throttled = 0
        self.challenge_realm: str | None = None
        self.send_oci_subject = True
        self.corrupt_paths: set[str] = set()
        self.status_override: dict[str, tuple[int, Mapping[str, str], int]] = {}
        self.path_delays: dict[str, float] = {}
        self.log.clear()
        self.request_headers.clear()
        self.counts.clear()

    def count(self, kind: str, method: str | None = None) -> int:
        """Requests of ``kind`` (see ``counts``), optionally only those with ``method``."""
        return sum(1 for m, p in self.log if _classify(p) == kind and (method is None or m == method))

    # referrer records --------------------------------------------------------------------------------
    def add_referrer(self, name: str, subject_digest: str, desc: Mapping[str, Any]) -> None:
        """Inject a descriptor into the referrers list without pushing anything (e.g. a dangling entry)."""
        self._records.setdefault(name, {}).setdefault(subject_digest, {})[str(desc["digest"])] = dict(desc)

    def referrers(self, name: str, subject_digest: str) -> list[dict[str, Any]]:
        return [dict(d) for d in self._records.get(name, {}).get(subject_digest, {}).values()]

    def forget_referrers(self) -> None:
        self._records.clear()

    # server ------------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def on_startup(self) -> None:
        self._session = aiohttp.ClientSession(
            trust_env=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(ssl=self.upstream_ssl if self.upstream_ssl is not None else False),
        )
        if self.rewrite_token_realm:
            # Learn the upstream token realm from the /v2/ challenge, if any.
            try:
                async with self._session.get(self.upstream_url + "/v2/", allow_redirects=False) as resp:
                    self._learn_challenge(resp.headers.get("WWW-Authenticate", ""))
            except aiohttp.ClientError:
                pass

    async def on_cleanup(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _learn_challenge(self, value: str) -> None:
        if not value.lower().startswith("bearer "):
            return
        realm = _REALM_RE.search(value)
        if realm and realm.group(1) != self.url + "/token":
            self.token_upstream = realm.group(1)
        service = _SERVICE_RE.search(value)
        if service:
            self.token_service = service.group(1)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.log.append((request.method, path))
        self.request_headers.append(dict(request.headers))
        self.counts[_classify(path)] += 1

        for fragment, seconds in list(self.path_delays.items()):
            if fragment in path:
                await asyncio.sleep(seconds)
                break

        for fragment, (status, headers, remaining) in list(self.status_override.items()):
            if fragment in path:
                if remaining <= 1:
                    self.status_override.pop(fragment, None)
                else:
                    self.status_override[fragment] = (status, headers, remaining - 1)
                code = _STATUS_CODES.get(status, "UNAVAILABLE")
                return _error(status, code, f"injected {status} by ReferrersProxy", headers)

        if path == "/token":
            return await self._handle_token(request)

        match = _REFERRERS_RE.match(path)
        if match and request.method in ("GET", "HEAD") and self.mode != "passthrough":
            return await self._handle_referrers(request, match.group("name"), match.group("digest"))
        return await self._forward(request)

    # referrers ---------------------------------------------------------------------------------------
    async def _handle_referrers(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        mode = self.mode
        if mode not in MODES:
            return web.Response(status=500, text=f"unknown ReferrersProxy mode {mode!r}")
        if mode == "404":
            return web.Response(status=404, body=b"404 page not found\n", content_type="text/plain", charset="utf-8")
        if mode in ("401", "401-always"):
            has_bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
            if mode == "401-always" or not has_bearer:
                realm = self.challenge_realm or f"{self.url}/token"
                challenge = f'Bearer realm="{realm}",service="{self.token_service}",scope="repository:{name}:pull"'
                return _error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
        if mode == "429" and self._throttled < self.throttle_count:
            self._throttled += 1
            return _error(429, "TOOMANYREQUESTS", "too many requests", {"Retry-After": str(self.retry_after)})
        if mode == "slow":
            await asyncio.sleep(self.delay)

        if not _valid_digest(digest):
            return _error(400, "DIGEST_INVALID", f"invalid digest {digest!r}")

        entries = self.referrers(name, digest)
        headers: dict[str, str] = {}
        wanted = request.query.getall("artifactType", [])
        if wanted and not self.ignore_filter:
            entries = [e for e in entries if e.get("artifactType") in wanted]
            headers["OCI-Filters-Applied"] = "artifactType"

        if self.page_size is not None and self.page_size > 0:
            last = request.query.get("last")
            start = 0
            if last is not None:
                digests = [e["digest"] for e in entries]
                start = digests.index(last) + 1 if last in digests else len(entries)
            page = entries[start : start + self.page_size]
            if start + self.page_size < len(entries):
                query: list[tuple[str, str]] = [("n", str(self.page_size)), ("last", page[-1]["digest"])]
                query.extend(("artifactType", a) for a in wanted)
                link = f"/v2/{name}/referrers/{digest}?{urllib.parse.urlencode(query)}"
                headers["Link"] = f'<{link}>; rel="next"'
            entries = page

        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        return web.Response(status=200, body=body, headers={"Content-Type": OCI_INDEX, **headers})

    # tokens ------------------------------------------------------------------------------------------
    async def _handle_token(self, request: web.Request) -> web.StreamResponse:
        if self.token_upstream is None:
            self._dummy_tokens += 1
            token = f"referrers-proxy-token-{self._dummy_tokens}"
            issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return web.json_response({"token": token, "access_token": token, "expires_in": 300, "issued_at": issued})
        target = self.token_upstream
        raw_query = request.rel_url.raw_query_string
        if raw_query:
            target += ("&" if "?" in target else "?") + raw_query
        return await self._forward(request, URL(target, encoded=True))

    # proxying ----------------------------------------------------------------------------------------
    async def _forward(self, request: web.Request, target: URL | None = None) -> web.StreamResponse:
        assert self._session is not None
        if target is None:
            raw = request.rel_url.raw_path
            if request.rel_url.raw_query_string:
                raw += "?" + request.rel_url.raw_query_string
            target = URL(self.upstream_url + raw, encoded=True)
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in request.headers.items():
            if key.lower() not in _HOP_BY_HOP:
                headers.add(key, value)
        if target.host != "127.0.0.1" or target.port != URL(self.upstream_url).port:
            headers.popall("Host", None)
        if "X-Forwarded-Proto" not in headers:
            headers["X-Forwarded-Proto"] = "http"
        body = await request.read()
        send_body = body if body or request.method in ("PUT", "POST", "PATCH") else None
        try:
            async with self._session.request(
                request.method,
                target,
                headers=headers,
                data=send_body,
                allow_redirects=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            ) as resp:
                data = await resp.read()
                status = resp.status
                upstream_headers = resp.headers
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"ReferrersProxy upstream error: {exc}")

        out: CIMultiDict[str] = CIMultiDict()
        for key, value in upstream_headers.items():
            if key.lower() in _HOP_BY_HOP:
                continue
            if key.lower() == "www-authenticate" and self.rewrite_token_realm:
                self._learn_challenge(value)
                if value.lower().startswith("bearer ") and self.token_upstream:
                    value = _REALM_RE.sub(f'realm="{self.url}/token"', value, count=1)
            out.add(key, value)

        path = request.path
        manifest = _MANIFEST_RE.match(path)
        if manifest and request.method == "PUT" and status == 201:
            subject = self._record_push(manifest.group("name"), body, request.headers.get("Content-Type"))
            if subject and self.send_oci_subject:
                out["OCI-Subject"] = subject
        elif manifest and request.method == "DELETE" and status == 202:
            self._forget(manifest.group("name"), manifest.group("reference"))

        if request.method == "GET" and path in self.corrupt_paths:
            data = _corrupt(data)

        if request.method == "HEAD" or status in (204, 304):
            length = upstream_headers.get("Content-Length")
            if length is not None and status not in (204, 304):
                out["Content-Length"] = length
            return web.Response(status=status, headers=out)
        return web.Response(status=status, body=data, headers=out)

    def _record_push(self, name: str, body: bytes, content_type: str | None) -> str | None:
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        subject = obj.get("subject")
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
            return None
        media_type = (content_type or "").split(";")[0].strip() or None
        desc = referrer_descriptor(body, media_type)
        self.add_referrer(name, subject["digest"], desc)
        return str(subject["digest"])

    def _forget(self, name: str, reference: str) -> None:
        for entries in self._records.get(name, {}).values():
            entries.pop(reference, None)

    # convenience -------------------------------------------------------------------------------------
    @staticmethod
    def digest_of(body: bytes) -> str:
        return sha256_digest(body)
