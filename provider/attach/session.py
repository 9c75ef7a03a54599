"""Synchronous registry access for ``referee attach``, built on oras-py (``oras.provider.Registry``).

oras-py does the HTTP work it is good at: blob uploads (``HEAD`` existence check, ``POST`` + monolithic ``PUT``,
``Location`` handling) and the 401 → authenticate → retry loop of ``do_request``. Referee puts its own registry
settings under it, the same ones ``referee verify`` uses:

* the registry must be in ``registries.allow``; token realms and redirect targets must be the registry itself or
  listed hosts (redirects elsewhere are not followed);
* TLS is verified (per-host CA bundles from ``registries.hosts``, else the system store); plain HTTP only for hosts
  listed with ``plainHttp: true``; ``REQUESTS_CA_BUNDLE``, proxies and ``~/.docker/config.json`` are not read;
* credentials are chosen as ``referee verify`` chooses them (the most specific match among ``registries.hosts``,
  pull secrets, ``registries.dockerConfig`` entries and credential providers), never by oras-py's own lookup; a
  bearer token is always asked for ``pull,push`` on the repository (oras-py's token backend reuses whatever token
  it got first, typically pull-only, and then fails every push);
* every request has a timeout, retries follow ``registries.maxAttempts`` with short backoff and ``Retry-After``
  (oras-py's own retry decorator sleeps up to 83 s between attempts and retries on any exception);
* manifests are written and read as exact bytes (oras-py's ``upload_manifest`` re-encodes a dict; its
  ``Subject.from_manifest`` hashes re-serialised JSON), their digests checked, their sizes capped.

Synchronous (requests): used by the CLI only, never on the server's request path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import json
import os
import random
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import oras.auth
import oras.container
import oras.provider
import requests
import requests.adapters
import structlog

from provider import mediatypes as mt
from provider.config import Credentials, RegistriesConfig, RegistryHostConfig
from provider.errors import (
    ArtifactTooLargeError,
    AuthDeniedError,
    AuthUnavailableError,
    DigestMismatchError,
    NotFoundError,
    ProviderError,
    RegistryError,
    RegistryNotAllowedError,
    RegistryUnavailableError,
    UnsupportedError,
)
from provider.oci import Descriptor
from provider.reference import ImageRef, compute_digest, parse_digest, verify_digest
from provider.registry.auth import Challenge, basic_header, parse_challenge
from provider.registry.credentials import CredentialStore
from provider.registry.realms import judge_realm
from provider.registry.urls import safe_authority

log = structlog.get_logger("referee.attach")

MIN_TIMEOUT = 30.0
MAX_RETRY_AFTER = 30.0
MAX_ERROR_BODY = 64 * 1024
MAX_TOKEN_BODY = 64 * 1024

_oras_do_request: Callable[..., requests.Response] = oras.provider.Registry.do_request.__wrapped__


def _error_summary(resp: requests.Response) -> str:
    try:
        body = next(resp.iter_content(MAX_ERROR_BODY), b"")
    except (requests.RequestException, OSError, RuntimeError):
        body = b""
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return f"{errors[0].get('code', '')} {errors[0].get('message', '')}".strip()[:200]
    except (ValueError, UnicodeDecodeError):
        pass
    return body[:200].decode("utf-8", "replace").strip() or str(resp.status_code)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _system_verify() -> str | bool:
    """The system trust store, as ``ssl.create_default_context()`` (and ``referee verify``) would load it."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.capath):
        if candidate and os.path.exists(candidate):
            return candidate
    return True


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, timeout: float) -> None:
        super().__init__(max_retries=0)
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, *args, **kwargs)


class _Session(requests.Session):
    """No environment (proxies, CA variables, netrc), a timeout on every request, and redirects followed only to
    hosts Referee may contact."""

    def __init__(self, timeout: float, may_follow: Callable[[str, str], bool]) -> None:
        super().__init__()
        self.trust_env = False
        self.max_redirects = 3
        self._may_follow = may_follow
        adapter = _TimeoutAdapter(timeout)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        if not self._may_follow(resp.url, urljoin(resp.url, target)):
            log.warning("redirect_refused", source=resp.url, target=urljoin(resp.url, target))
            return None
        return target


class _PushAuth(oras.auth.TokenAuth):  # type: ignore[misc]
    """oras-py's auth seam filled with Referee's credentials and rules. ``token`` stays non-``None`` once a header
    is known, so oras-py's ``do_request`` sends it pre-emptively."""

    def __init__(self, session: RegistrySession) -> None:
        super().__init__()
        self._owner = session
        self._header: str | None = None

    def load_configs(self, container: Any, configs: Any = None) -> None:
        """Credentials come from Referee's configuration only."""

    def get_auth_header(self) -> dict[str, str]:
        return {"Authorization": self._header} if self._header else {}

    def authenticate_request(
        self, original: requests.Response, headers: dict[str, str], refresh: bool = False
    ) -> tuple[dict[str, str], bool]:
        owner = self._owner
        if original.status_code == 403:
            raise AuthDeniedError(f"{owner.registry} denied access to {owner.repository}: {_error_summary(original)}")
        challenge = parse_challenge(original.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise AuthDeniedError(f"{owner.registry} answered 401 without a challenge")
        self._header = owner.authorization(challenge)
        self.token = "set"
        headers = dict(headers or {})
        headers["Authorization"] = self._header
        return headers, True


class ManifestRefsUnknownError(RegistryError):
    """The registry refused a manifest or index because it references content it does not hold
    (``MANIFEST_BLOB_UNKNOWN``); ``digests`` are the ones it named."""

    def __init__(self, message: str, digests: frozenset[str]) -> None:
        super().__init__(message)
        self.digests = digests


def _unknown_refs(resp: requests.Response) -> frozenset[str]:
    """The digests of a ``400 MANIFEST_BLOB_UNKNOWN`` answer (empty when it is any other error)."""
    try:
        doc = json.loads(next(resp.iter_content(MAX_ERROR_BODY), b""))
    except (ValueError, UnicodeDecodeError, requests.RequestException, OSError):
        return frozenset()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors:
        return frozenset()
    digests: set[str] = set()
    for error in errors:
        if not isinstance(error, dict) or error.get("code") != "MANIFEST_BLOB_UNKNOWN":
            return frozenset()
        detail = error.get("detail")
        if not isinstance(detail, str):
            return frozenset()
        try:
            digests.add(parse_digest(detail))
        except ProviderError:
            return frozenset()
    return frozenset(digests)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A manifest read by tag or digest: exact bytes and what the registry said about them."""

    body: bytes
    digest: str
    media_type: str | None
    etag: str | None


def _credentials_for(config: RegistriesConfig, ref: ImageRef) -> Credentials | None:
    """The credentials ``referee verify`` would use for ``ref`` (most specific match of hosts, pull secrets, Docker
    config entries and credential providers: :class:`CredentialStore`), looked up from this synchronous code."""
    lookup = CredentialStore(config).lookup(ref)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(lookup)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, lookup).result()


class RegistrySession(oras.provider.Registry):  # type: ignore[misc]
    """One repository on one registry, for pushing. Close it (or use it as a context manager)."""

    def __init__(self, ref: ImageRef, config: RegistriesConfig, *, max_manifest_bytes: int) -> None:
        if not config.is_allowed(ref.registry, ref.repository):
            raise RegistryNotAllowedError(
                f"{ref.name} is not in registries.allow; Referee contacts only listed registries"
            )
        self.config = config
        self.registry = ref.registry
        self.repository = ref.repository
        self.settings = config.host_config(ref.registry)
        self.max_manifest_bytes = max_manifest_bytes
        self._tmp = tempfile.TemporaryDirectory(prefix="referee-attach-")
        self._ca_files: dict[str, str] = {}
        verify = self._verify_for(self.settings)
        super().__init__(hostname=ref.api_host, insecure=self.settings.plain_http, tls_verify=verify)
        self.base_url = f"{self.prefix}://{ref.api_host}"
        self.session = _Session(max(config.request_timeout, MIN_TIMEOUT), self._may_follow)
        self.auth = _PushAuth(self)
        self.auth.session = self.session
        self.auth.prefix = self.prefix
        self.auth._tls_verify = verify
        self.credentials: Credentials | None = _credentials_for(config, ref)
        self._helper_only = self.credentials is None and (
            ref.registry in config.credential_helpers or "*" in config.credential_helpers
        )
        namespace, _, name = ref.repository.rpartition("/")
        container = oras.container.Container("referee/placeholder", registry=ref.api_host)
        container.namespace = namespace or None
        container.repository = name
        self.container = container
        self._sleep: Callable[[float], None] = time.sleep

    # -- lifecycle --------------------------------------------------------------------------------------

    def close(self) -> None:
        self.session.close()
        self._tmp.cleanup()

    def __enter__(self) -> RegistrySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- TLS, hosts, credentials ---------------------------------------------------------------------------

    def _verify_for(self, settings: RegistryHostConfig) -> str | bool:
        if settings.plain_http:
            return True
        if settings.ca_pem is None:
            return _system_verify()
        path = self._ca_files.get(settings.host)
        if path is None:
            path = os.path.join(self._tmp.name, f"ca-{len(self._ca_files)}.pem")
            Path(path).write_bytes(settings.ca_pem)
            self._ca_files[settings.host] = path
        return path

    def _listed(self, netloc: str) -> bool:
        return self.config.is_allowed(netloc, "") or netloc in {h.host for h in self.config.hosts}

    def _may_follow(self, source: str, target: str) -> bool:
        host = safe_authority(target)
        if host is None:
            return False
        if _origin(target) == _origin(source):
            return True
        return urlsplit(target).scheme == "https" and self._listed(host)

    def authorization(self, challenge: Challenge) -> str:
        """The ``Authorization`` value answering ``challenge`` (basic, or a ``pull,push`` bearer token)."""
        if self._helper_only:
            raise AuthDeniedError(
                f"{self.registry} uses a docker credential helper, which Referee cannot run; "
                "give credentials in registries.hosts or an auths entry"
            )
        creds = self.credentials
        if challenge.scheme == "basic":
            if not (creds and creds.username and creds.password):
                raise AuthDeniedError(f"{self.registry} requires credentials and none are configured")
            return basic_header(creds.username, creds.password.reveal())
        if challenge.scheme != "bearer":
            raise UnsupportedError(f"{self.registry}: unsupported auth scheme {challenge.scheme!r}")
        if creds and creds.registry_token:
            return f"Bearer {creds.registry_token.reveal()}"
        return f"Bearer {self._fetch_token(challenge)}"

    def _fetch_token(self, challenge: Challenge) -> str:
        realm = challenge.realm or ""
        judged = judge_realm(realm, self.registry, self.base_url, self.settings, self.config, self.credentials)
        realm_host, realm_settings = judged.host, judged.settings
        if realm_host in {h.host for h in self.config.hosts}:
            verify = self._verify_for(realm_settings)
        else:
            verify = self._verify_for(self.settings) if not self.settings.plain_http else _system_verify()
        scope = f"repository:{self.repository}:pull,push"
        creds = self.credentials
        headers: dict[str, str] = {"Accept": "application/json"}
        query = {"scope": scope, **({"service": challenge.service} if challenge.service else {})}
        try:
            if creds and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token.reveal(),
                    "client_id": "referee",
                    **query,
                }
                resp = self.session.post(realm, data=form, headers=headers, verify=verify, allow_redirects=False)
            else:
                if creds and creds.username and creds.password:
                    headers["Authorization"] = basic_header(creds.username, creds.password.reveal())
                url = realm + ("&" if "?" in realm else "?") + urlencode(query)
                resp = self.session.get(url, headers=headers, verify=verify, allow_redirects=False, stream=True)
            with resp:
                body = _read_capped(resp, MAX_TOKEN_BODY, "token response")
        except requests.exceptions.SSLError as exc:
            raise AuthDeniedError(f"token service {realm_host}: TLS certificate not trusted ({exc})") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise AuthUnavailableError(f"token service {realm_host} unreachable: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise AuthDeniedError(
                f"token service {realm_host} refused the credentials for {scope} ({resp.status_code})"
            )
        if resp.status_code != 200:
            raise AuthUnavailableError(f"token service {realm_host} answered {resp.status_code}")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise AuthDeniedError(f"token service {realm_host} returned a non-JSON body") from None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthDeniedError(f"token service {realm_host} returned no token")
        return token

    # -- requests ----------------------------------------------------------------------------------------

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> requests.Response:
        """oras-py's request-with-auth (undecorated), under Referee's host rules, retries and error mapping.
        Never returns 401 or 403."""
        if _origin(url) != _origin(self.base_url) and not self._may_follow(self.base_url, url):
            raise RegistryError(f"{self.registry}: refusing to send {method} to {url}, a host that is not listed")
        what = f"{method} {urlsplit(url).path}"
        for attempt in range(1, self.config.max_attempts + 1):
            last = attempt >= self.config.max_attempts
            try:
                resp = _oras_do_request(self, url, method, data, dict(headers or {}), json, stream)
            except requests.exceptions.SSLError as exc:
                raise RegistryError(f"{self.registry}: TLS certificate not trusted ({exc})") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    raise RegistryUnavailableError(
                        f"{self.registry} unreachable after {attempt} attempts ({type(exc).__name__})"
                    ) from None
                self._sleep(min(2.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2))  # noqa: S311
                continue
            except ValueError as exc:  # oras-py: "Cannot respond to request for authentication."
                raise AuthDeniedError(f"{self.registry}: {exc}") from None
            if resp.status_code in (401, 403):
                summary = _error_summary(resp)
                resp.close()
                raise AuthDeniedError(f"{self.registry} refused {what} on {self.repository}: {summary}")
            if resp.status_code == 429 or resp.status_code >= 500:
                if last:
                    summary = _error_summary(resp)
                    resp.close()
                    raise RegistryUnavailableError(
                        f"{self.registry} answered {resp.status_code} to {what} after {attempt} attempts: {summary}"
                    )
                delay = _retry_after(resp.headers.get("Retry-After"))
                resp.close()
                self._sleep(min(MAX_RETRY_AFTER, delay if delay is not None else 0.2 * 2 ** (attempt - 1)))
                continue
            return resp
        raise RegistryUnavailableError(f"{self.registry}: no attempts left for {what}")  # pragma: no cover

    def _url(self, path: str) -> str:
        return f"{self.base_url}/v2/{self.repository}{path}"

    def resolve(self, ref: ImageRef) -> Descriptor:
        """The subject's descriptor: ``HEAD`` for digest, type and size; ``GET`` and hash when a header is missing."""
        reference = ref.reference
        what = f"manifest {ref.name}@{reference}" if ref.digest else f"manifest {ref.name}:{reference}"
        resp = self.do_request(self._url(f"/manifests/{reference}"), "HEAD", headers={"Accept": mt.ACCEPT_SUBJECT})
        with resp:
            if resp.status_code == 404:
                raise NotFoundError(f"{what} not found")
            _expect(resp, 200, what)
            digest = resp.headers.get("Docker-Content-Digest")
            media_type = _media_type(resp.headers.get("Content-Type"))
            size = resp.headers.get("Content-Length", "")
        if not digest or media_type is None or not size.isdigit():
            fetched = self.fetch(reference, mt.ACCEPT_SUBJECT, what)
            if fetched is None:
                raise NotFoundError(f"{what} not found")
            digest, media_type, size = fetched.digest, fetched.media_type, str(len(fetched.body))
        try:
            parse_digest(digest)
        except ProviderError:
            raise RegistryError(f"{what}: registry sent an invalid digest {digest!r}") from None
        if ref.digest and digest != ref.digest:
            raise DigestMismatchError(f"{what}: registry reports digest {digest}")
        if media_type not in mt.SUPPORTED_MANIFEST_TYPES:
            raise UnsupportedError(f"{what}: unsupported manifest media type {media_type!r}")
        return Descriptor(media_type=media_type, digest=digest, size=int(size))

    def fetch(self, reference: str, accept: str, what: str) -> Fetched | None:
        """``GET`` a manifest (``None`` on 404), its bytes checked against the digest asked for or announced."""
        resp = self.do_request(
            self._url(f"/manifests/{reference}"),
            "GET",
            headers={"Accept": accept, "Accept-Encoding": "identity"},
            stream=True,
        )
        with resp:
            if resp.status_code == 404:
                return None
            _expect(resp, 200, what)
            body = _read_capped(resp, self.max_manifest_bytes, what)
            header = resp.headers.get("Docker-Content-Digest")
            etag = resp.headers.get("ETag")
            media_type = _media_type(resp.headers.get("Content-Type"))
        expected = reference if reference.startswith(("sha256:", "sha512:")) else header
        if expected:
            verify_digest(body, expected, what)
        if header and expected and header != expected:
            raise DigestMismatchError(f"{what}: Docker-Content-Digest {header} differs from {expected}")
        return Fetched(body, expected or compute_digest(body), media_type, etag)

    def put_manifest(
        self, reference: str, body: bytes, media_type: str, what: str, headers: Mapping[str, str] | None = None
    ) -> requests.Response | None:
        """``PUT`` exact manifest bytes; ``None`` when a conditional write was refused (412)."""
        resp = self.do_request(
            self._url(f"/manifests/{reference}"),
            "PUT",
            data=body,
            headers={"Content-Type": media_type, **(headers or {})},
        )
        with resp:
            if resp.status_code == 412:
                return None
            if resp.status_code == 400:
                unknown = _unknown_refs(resp)
                if unknown:
                    raise ManifestRefsUnknownError(
                        f"{what}: the registry holds no {', '.join(sorted(unknown))}", unknown
                    )
            _expect(resp, 201, what)
            announced = resp.headers.get("Docker-Content-Digest")
            if announced and announced != compute_digest(body, announced.partition(":")[0] or "sha256"):
                raise DigestMismatchError(f"{what}: registry stored digest {announced} for the bytes sent")
            return resp

    def upload_file(self, path: Path, descriptor: Mapping[str, Any]) -> None:
        """One blob through oras-py (existence check, then POST + PUT)."""
        resp = self.upload_blob(str(path), self.container, dict(descriptor))
        try:
            if resp.status_code not in (200, 201):
                raise RegistryError(
                    f"{self.registry}: upload of {descriptor['digest']} answered {resp.status_code}: "
                    f"{_error_summary(resp)}"
                )
        finally:
            if resp.raw is not None:  # oras-py answers "already there" with a bare Response
                resp.close()

    def upload_bytes(self, data: bytes, descriptor: Mapping[str, Any]) -> None:
        path = Path(self._tmp.name) / descriptor["digest"].replace(":", "-")
        path.write_bytes(data)
        self.upload_file(path, descriptor)

    def has_referrers_api(self, digest: str) -> bool:
        """``GET /v2/<name>/referrers/<digest>``: 200 means the registry has the API, 404 that it has not."""
        what = f"referrers of {self.registry}/{self.repository}@{digest}"
        resp = self.do_request(self._url(f"/referrers/{digest}"), "GET", headers={"Accept": mt.OCI_INDEX}, stream=True)
        with resp:
            if resp.status_code == 404:
                return False
            _expect(resp, 200, what)
            return True


def _media_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip() or None


def _expect(resp: requests.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise RegistryError(f"{what}: registry answered {resp.status_code}: {_error_summary(resp)}")


def _read_capped(resp: requests.Response, max_bytes: int, what: str) -> bytes:
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ArtifactTooLargeError(f"{what} is {length} bytes, over the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    total = 0
    for chunk in resp.iter_content(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise ArtifactTooLargeError(f"{what} is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def open_session(ref: ImageRef, config: RegistriesConfig, *, max_manifest_bytes: int) -> Iterator[RegistrySession]:
    session = RegistrySession(ref, config, max_manifest_bytes=max_manifest_bytes)
    try:
        yield session
    finally:
        session.close()
