"""Kubelet image credential provider plugins, run the way the kubelet runs them.

For an image matching a provider's ``matchImages``, the plugin ``<binDir>/<name>`` is executed with the
provider's ``args``, Referee's environment plus the provider's ``env``, and a ``CredentialProviderRequest``
on stdin; it answers a ``CredentialProviderResponse`` on stdout (``credentialprovider.kubelet.k8s.io``
v1, v1beta1 or v1alpha1: the same schema). The response is cached per its ``cacheKeyType`` (``Image``:
this ``registry/repository``; ``Registry``: this ``host[:port]``; ``Global``: everything the provider
matches) for ``cacheDuration`` (absent: the provider's ``defaultCacheDuration``; zero: not cached).

Each run is bounded by ``execTimeout`` (the plugin's whole process group is killed) and ``maxOutputBytes``
on stdout. Neither stdout nor stderr is ever logged or put into an error message: both may hold secrets.
Any failure is a :class:`CredentialProviderError` (transient): the key is reported in ``systemError`` and
nothing is allowed. Concurrent lookups that one run would answer share that run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from provider import deadline, metrics
from provider.cache import SingleFlight
from provider.config import CredentialProviderSpec, Credentials
from provider.confignode import Secret
from provider.errors import CredentialProviderError, DeadlineExceededError
from provider.registry.credential_config import parse_go_duration
from provider.registry.matching import ImagePattern, parse_pattern

log = structlog.get_logger("referee.credentials")

CACHE_KEY_TYPES = ("Image", "Registry", "Global")
MAX_CACHE_ENTRIES = 4096
MAX_TOKEN_BYTES = 64 * 1024
_READ_CHUNK = 65536
REAP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """A decoded ``CredentialProviderResponse``; ``auth`` is ordered most specific key first."""

    cache_key_type: str
    cache_duration: float | None
    auth: tuple[tuple[ImagePattern, Credentials], ...]

    def select(self, registry: str, repository: str) -> Credentials | None:
        for pattern, credentials in self.auth:
            if pattern.matches(registry, repository):
                return credentials
        return None


def parse_response(data: bytes, api_version: str) -> ProviderResponse:
    """Decode and check a plugin's stdout. ``ValueError`` messages never quote the output."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("stdout is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("stdout is not a JSON object")
    if doc.get("kind") != "CredentialProviderResponse":
        raise ValueError("kind is not CredentialProviderResponse")
    if doc.get("apiVersion") != api_version:
        raise ValueError(f"apiVersion is not {api_version}, the version of the request")
    key_type = doc.get("cacheKeyType")
    if key_type not in CACHE_KEY_TYPES:
        raise ValueError(f"cacheKeyType must be one of {', '.join(CACHE_KEY_TYPES)}")
    duration: float | None = None
    if doc.get("cacheDuration") is not None:
        if not isinstance(doc["cacheDuration"], str):
            raise ValueError("cacheDuration is not a duration string")
        try:
            duration = parse_go_duration(doc["cacheDuration"])
        except ValueError:
            raise ValueError("cacheDuration is not a valid duration") from None
    auth = doc.get("auth") or {}
    if not isinstance(auth, dict):
        raise ValueError("auth is not an object")
    entries: list[tuple[ImagePattern, Credentials]] = []
    for index, (key, value) in enumerate(auth.items()):
        try:
            pattern = parse_pattern(key)
        except ValueError:
            raise ValueError(f"auth key #{index + 1} is not an image pattern") from None
        if not isinstance(value, dict):
            raise ValueError(f"auth entry #{index + 1} is not an object")
        username, password = value.get("username", ""), value.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ValueError(f"auth entry #{index + 1}: username and password must be strings")
        entries.append(
            (pattern, Credentials(username=username or None, password=Secret(password) if password else None))
        )
    # The kubelet tries keys in reverse order: longer keys and non-wildcard keys first.
    entries.sort(key=lambda e: e[0].text, reverse=True)
    entries.sort(key=lambda e: e[0].specificity, reverse=True)
    return ProviderResponse(cache_key_type=str(key_type), cache_duration=duration, auth=tuple(entries))


@dataclass(frozen=True, slots=True)
class _ServiceAccount:
    token: str | None
    annotations: tuple[tuple[str, str], ...]
    cache_key: str


@dataclass(slots=True)
class _Cached:
    response: ProviderResponse
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Result:
    """What one run answered, and for which request (so a waiter can tell whether it covers its image)."""

    image: str
    registry: str
    response: ProviderResponse

    def covers(self, image: str, registry: str) -> bool:
        kind = self.response.cache_key_type
        return kind == "Global" or (kind == "Registry" and registry == self.registry) or image == self.image


@dataclass(slots=True)
class _TokenFile:
    path: str
    stamp: tuple[int, int, int] = (0, 0, 0)
    value: str = ""


@dataclass(slots=True)
class ExecProvider:
    """One configured provider: its cache, its in-flight runs and the plugin process."""

    spec: CredentialProviderSpec
    exec_timeout: float
    max_output_bytes: int
    clock: Callable[[], float] = time.monotonic
    environ: Mapping[str, str] | None = None
    _cache: dict[tuple[str, str, str], _Cached] = field(default_factory=dict)
    _flight: SingleFlight[tuple[str, str, str], _Result] = field(default_factory=SingleFlight)
    _key_type: str | None = None
    _token: _TokenFile | None = None

    def matches(self, registry: str, repository: str) -> ImagePattern | None:
        """The most specific of the provider's ``matchImages`` that matches, if any."""
        found = [p for p in self.spec.match_images if p.matches(registry, repository)]
        return max(found, key=lambda p: p.specificity) if found else None

    async def credentials(self, registry: str, repository: str) -> Credentials | None:
        """Credentials for ``registry/repository`` from the cache or a run of the plugin; ``None`` when
        the plugin returned no key matching the image (the kubelet then tries the next source)."""
        image = f"{registry}/{repository}"
        account = self._service_account()
        cached = self._cached(image, registry, account.cache_key)
        if cached is not None:
            return cached.select(registry, repository)
        result = await self._run_shared(self._flight_key(image, registry, account.cache_key), image, registry, account)
        if not result.covers(image, registry):
            # The run this lookup joined was for another image and is not valid for this one.
            result = await self._run_shared(("Image", image, account.cache_key), image, registry, account)
        return result.response.select(registry, repository)

    # -- cache -------------------------------------------------------------------------------------------

    def _cached(self, image: str, registry: str, account_key: str) -> ProviderResponse | None:
        now = self.clock()
        for key in (("Image", image, account_key), ("Registry", registry, account_key), ("Global", "", account_key)):
            entry = self._cache.get(key)
            if entry is None:
                continue
            if now < entry.expires_at:
                return entry.response
            del self._cache[key]
        return None

    def _store(self, result: _Result, account_key: str) -> None:
        response = result.response
        duration = self.spec.default_cache_duration if response.cache_duration is None else response.cache_duration
        if duration <= 0:
            return
        kind = response.cache_key_type
        scope = result.image if kind == "Image" else result.registry if kind == "Registry" else ""
        now = self.clock()
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            for key in [k for k, v in self._cache.items() if v.expires_at <= now] or list(self._cache)[:1]:
                del self._cache[key]
        self._cache[(kind, scope, account_key)] = _Cached(response, now + duration)

    def _flight_key(self, image: str, registry: str, account_key: str) -> tuple[str, str, str]:
        """Lookups share a run when its answer would be cached for all of them: per image, per registry or
        globally, as the provider's last answer said. Before the first answer, all lookups share one run."""
        kind = self._key_type
        if kind == "Image":
            return ("Image", image, account_key)
        if kind == "Registry":
            return ("Registry", registry, account_key)
        return (kind or "first", "", account_key)

    async def _run_shared(
        self, key: tuple[str, str, str], image: str, registry: str, account: _ServiceAccount
    ) -> _Result:
        async def run() -> _Result:
            result = _Result(image, registry, await self._exec(image, account))
            self._key_type = result.response.cache_key_type
            self._store(result, account.cache_key)
            return result

        left = deadline.remaining()
        if left is None:
            return await self._flight.run(key, run)
        try:
            async with asyncio.timeout(max(left, 0.0)):
                return await self._flight.run(key, run)
        except TimeoutError:
            raise DeadlineExceededError(
                f"deadline reached while credential provider {self.spec.name} was running for {image}"
            ) from None

    # -- service account ----------------------------------------------------------------------------------

    def _service_account(self) -> _ServiceAccount:
        attributes = self.spec.token_attributes
        if attributes is None:
            return _ServiceAccount(None, (), "")
        token = self._read_token() if self.spec.token_file else None
        annotations = self.spec.service_account_annotations
        if attributes.cache_type == "Token" and token:
            cache_key = "token:" + hashlib.sha256(token.encode()).hexdigest()
        else:
            cache_key = "service-account"
        return _ServiceAccount(token, annotations, cache_key)

    def _read_token(self) -> str:
        """Referee's projected service-account token; re-read when the kubelet has rotated the file."""
        assert self.spec.token_file is not None
        if self._token is None:
            self._token = _TokenFile(self.spec.token_file)
        try:
            st = os.stat(self._token.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._token.stamp:
                with open(self._token.path, "rb") as fh:
                    data = fh.read(MAX_TOKEN_BYTES + 1)
                if len(data) > MAX_TOKEN_BYTES:
                    raise CredentialProviderError(
                        f"service account token file {self._token.path} is over {MAX_TOKEN_BYTES} bytes"
                    )
                self._token.value = data.decode("utf-8", "replace").strip()
                self._token.stamp = stamp
        except OSError as exc:
            raise CredentialProviderError(
                f"cannot read the service account token for credential provider {self.spec.name} "
                f"from {self._token.path}: {exc.strerror or exc}"
            ) from None
        if not self._token.value:
            raise CredentialProviderError(f"service account token file {self._token.path} is empty")
        return self._token.value

    # -- exec ---------------------------------------------------------------------------------------------------

    def _request(self, image: str, account: _ServiceAccount) -> bytes:
        request: dict[str, Any] = {"apiVersion": self.spec.api_version, "kind": "CredentialProviderRequest"}
        request["image"] = image
        if account.token is not None:
            request["serviceAccountToken"] = account.token
        if self.spec.token_attributes is not None and account.annotations:
            request["serviceAccountAnnotations"] = dict(account.annotations)
        return json.dumps(request).encode()

    async def _exec(self, image: str, account: _ServiceAccount) -> ProviderResponse:
        started = time.monotonic()
        try:
            stdout = await run_plugin(
                [self.spec.executable, *self.spec.args],
                self._request(image, account),
                env={**(os.environ if self.environ is None else self.environ), **dict(self.spec.env)},
                timeout=self.exec_timeout,
                max_output_bytes=self.max_output_bytes,
            )
            response = parse_response(stdout, self.spec.api_version)
        except (PluginFailedError, ValueError) as exc:
            metrics.CREDENTIAL_PROVIDER_EXECS.labels(self.spec.name, "error").inc()
            log.warning("credential_provider_failed", provider=self.spec.name, image=image, reason=str(exc))
            raise CredentialProviderError(f"credential provider {self.spec.name} for {image}: {exc}") from None
        metrics.CREDENTIAL_PROVIDER_EXECS.labels(self.spec.name, "success").inc()
        log.info(
            "credential_provider_ran",
            provider=self.spec.name,
            image=image,
            cache_key_type=response.cache_key_type,
            cache_duration=response.cache_duration,
            auth_keys=[p.text for p, _ in response.auth],
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return response


class PluginFailedError(Exception):
    """A plugin run that produced no usable stdout; the message never quotes its output."""


async def run_plugin(
    argv: list[str], stdin: bytes, *, env: Mapping[str, str], timeout: float, max_output_bytes: int
) -> bytes:
    """Run ``argv`` in its own process group, feed ``stdin``, return stdout (at most ``max_output_bytes``).
    stderr is read and discarded (only its size is reported). On timeout or too much output the whole
    process group is killed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise PluginFailedError(f"cannot execute {argv[0]}: {exc.strerror or exc}") from None
    stdin_pipe, stdout_pipe, stderr_pipe = proc.stdin, proc.stdout, proc.stderr
    if stdin_pipe is None or stdout_pipe is None or stderr_pipe is None:  # pragma: no cover - PIPE was asked for
        raise PluginFailedError("no pipes to the plugin")

    async def feed() -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin_pipe.write(stdin)
            await stdin_pipe.drain()
        stdin_pipe.close()

    async def read_stdout() -> bytes:
        chunks, total = [], 0
        while chunk := await stdout_pipe.read(_READ_CHUNK):
            total += len(chunk)
            if total > max_output_bytes:
                raise PluginFailedError(f"stdout exceeds {max_output_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def count_stderr() -> int:
        total = 0
        while chunk := await stderr_pipe.read(_READ_CHUNK):
            total += len(chunk)
        return total

    tasks: list[asyncio.Task[Any]] = [asyncio.ensure_future(feed()), asyncio.ensure_future(count_stderr())]
    finished = False
    try:
        async with asyncio.timeout(timeout):
            stdout = await read_stdout()
            stderr_bytes = await tasks[1]
            await tasks[0]
            status = await proc.wait()
        finished = True
    except TimeoutError:
        raise PluginFailedError(f"timed out after {timeout:g}s (killed)") from None
    finally:
        for task in tasks:
            task.cancel()
        if not finished:
            # The group is killed even when the plugin itself has exited: a child may still hold its pipes
            # (its process group id cannot be reused while such a member lives).
            _kill_group(proc.pid)
            await _reap(proc, argv[0])
    if status != 0:
        raise PluginFailedError(f"exited with status {status} (stderr: {stderr_bytes} bytes, not logged)")
    return stdout


async def _reap(proc: asyncio.subprocess.Process, program: str) -> None:
    """Wait for the killed plugin. Python 3.11's ``wait()`` also waits for the pipes to close, which a child
    that left the plugin's process group (``setsid``) could hold open forever: the wait is bounded."""
    try:
        async with asyncio.timeout(REAP_TIMEOUT):
            await proc.wait()
    except TimeoutError:
        log.warning("credential_provider_not_reaped", program=program, pid=proc.pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
