"""Kubelet credential provider plugins and pull secrets in front of a real registry that requires credentials.

The registry is Debian's docker-registry with TLS and htpasswd auth (the session ``tls_registry``); the plugin
is ``tests/support/credential_plugin.py``, a real executable speaking the published CredentialProviderRequest /
CredentialProviderResponse exec API. Every run of the plugin is appended to its log, so the tests count runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provider import logs
from provider.cache import ContentCache
from provider.config import load_config
from provider.errors import AuthDeniedError, CredentialProviderError, DeadlineExceededError, ProviderError
from provider.reference import ImageRef, parse_reference
from provider.registry.client import RegistryClient
from tests.integration.conftest import SignedSet
from tests.support.content import Auth, cosign_sign_legacy, make_image, push_image
from tests.support.credential_plugin import PluginControl, install_plugin, provider_config
from tests.support.referee import write_config
from tests.support.registry import RegistryProcess

SECRET_ON_STDERR = "stderr-secret-9f2c1d"  # what a careless plugin prints on stderr


@dataclass
class Private:
    """Signed images in the TLS + htpasswd registry; nothing can be read there without alice's password."""

    registry: RegistryProcess
    repos: tuple[str, ...]

    @property
    def host(self) -> str:
        return self.registry.host

    def ref(self, repo: str, tag: str = "v1") -> str:
        return f"{self.host}/{repo}:{tag}"

    @property
    def good_auth(self) -> dict[str, dict[str, str]]:
        assert self.registry.username is not None and self.registry.password is not None
        return {self.host: {"username": self.registry.username, "password": self.registry.password}}


@pytest.fixture(scope="module")
def private(tls_registry: RegistryProcess, signed_set: SignedSet) -> Private:
    reg = tls_registry
    assert reg.username is not None and reg.password is not None
    auth: Auth = ("basic", reg.username, reg.password)
    repos = ("creds/app", "creds/other", "team/private/app", "team/web")
    for repo in repos:
        for tag in ("v1", "v2"):
            image = make_image(f"credentials {repo}:{tag}")
            push_image(reg.url, repo, tag, image, auth, reg.ssl_context())
            cosign_sign_legacy(reg.url, repo, image["digest"], signed_set.key, auth, reg.ssl_context())
    return Private(reg, repos)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    control: PluginControl
    bin_dir: Path
    directory: Path

    def section(self, match_images: list[str], **settings: Any) -> dict[str, Any]:
        extra = settings.pop("provider", None)
        default_cache = settings.pop("default_cache_duration", "1h")
        config = provider_config(
            self.directory, self.control, match_images, extra=extra, default_cache_duration=default_cache
        )
        return {"config": str(config), "binDir": str(self.bin_dir), **settings}


@pytest.fixture
def plugin(tmp_path: Path) -> Setup:
    bin_dir = tmp_path / "plugins"
    install_plugin(bin_dir)
    return Setup(PluginControl(tmp_path / "plugin"), bin_dir, tmp_path)


def registries(private: Private, **extra: Any) -> dict[str, Any]:
    return {
        "allow": ["127.0.0.1:*"],
        "hosts": [{"host": private.host, "caFile": str(private.registry.ca_pem_path)}],
        **extra,
    }


@pytest.fixture
async def client_factory(tmp_path: Path) -> AsyncIterator[Callable[..., RegistryClient]]:
    clients: list[RegistryClient] = []

    def make(registries_section: dict[str, Any], clock: Callable[[], float] | None = None) -> RegistryClient:
        path = write_config(tmp_path / f"referee-{len(clients)}.yaml", {"registries": registries_section})
        config = load_config(path)
        kwargs: dict[str, Any] = {} if clock is None else {"monotonic": clock}
        client = RegistryClient(config.registries, config.limits, ContentCache(0), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def ref(text: str) -> ImageRef:
    return parse_reference(text)


# -- the plugin opens the registry -----------------------------------------------------------------------------


async def test_without_credentials_the_registry_refuses(private: Private, client_factory: Any) -> None:
    client = client_factory(registries(private))
    with pytest.raises(AuthDeniedError):
        await client.resolve(ref(private.ref("creds/app")))


async def test_plugin_credentials_open_the_registry_and_run_once(
    private: Private, plugin: Setup, client_factory: Any
) -> None:
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth)
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host])))
    subject = ref(private.ref("creds/app"))
    descriptor = await client.resolve(subject)
    manifest = await client.get_manifest(
        subject, descriptor.digest, "application/vnd.oci.image.manifest.v1+json", descriptor.digest, "m"
    )
    assert manifest.descriptor.digest == descriptor.digest
    legacy = await client.list_referrers(subject, descriptor.digest, None)
    assert legacy, "the cosign signature tag was read through the same credentials"
    await client.resolve(ref(private.ref("creds/app", "v2")))
    assert client.request_count >= 5
    runs = plugin.control.runs()
    assert len(runs) == 1, runs
    assert runs[0]["image"] == f"{private.host}/creds/app"
    assert runs[0]["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1"
    assert runs[0]["args"] == ["get-credentials"]
    assert runs[0]["token"] is None and runs[0]["annotations"] is None


async def test_wrong_credentials_from_the_plugin_are_refused(
    private: Private, plugin: Setup, client_factory: Any
) -> None:
    plugin.control.set(auth={private.host: {"username": "alice", "password": "wrong"}})
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host])))
    with pytest.raises(AuthDeniedError):
        await client.resolve(ref(private.ref("creds/app")))


@pytest.mark.parametrize(
    ("key_type", "expected_runs"),
    [("Image", ["creds/app", "creds/other", "team/web"]), ("Registry", ["creds/app"]), ("Global", ["creds/app"])],
)
async def test_cache_by_key_type(
    private: Private,
    signed_set: SignedSet,
    plugin: Setup,
    client_factory: Any,
    key_type: str,
    expected_runs: list[str],
) -> None:
    plugin.control.set(cacheKeyType=key_type, auth=private.good_auth)
    plain = signed_set.registry.host
    section = registries(private, credentialProviders=plugin.section([private.host, plain]))
    section["hosts"].append({"host": plain, "plainHttp": True})
    client = client_factory(section)
    for repo in ("creds/app", "creds/other", "team/web", "creds/app", "creds/other"):
        await client.resolve(ref(private.ref(repo)))
        await client.resolve(ref(private.ref(repo, "v2")))
    # The plain registry needs no credentials; the answer has no key for it, so the request is anonymous.
    await client.resolve(ref(signed_set.ref("signed")))
    runs = [r["image"] for r in plugin.control.runs()]
    if key_type != "Global":
        expected = [f"{private.host}/{repo}" for repo in expected_runs] + [f"{plain}/{signed_set.repo}"]
    else:
        expected = [f"{private.host}/{repo}" for repo in expected_runs]
    assert runs == expected


async def test_cache_duration_expiry_and_rerun(private: Private, plugin: Setup, client_factory: Any) -> None:
    clock = FakeClock()
    plugin.control.set(cacheKeyType="Registry", cacheDuration="30s", auth=private.good_auth)
    section = plugin.section([private.host], default_cache_duration="5m")
    client = client_factory(registries(private, credentialProviders=section), clock)
    subject = ref(private.ref("creds/app"))
    await client.resolve(subject)
    clock.now += 29
    await client.resolve(subject)
    assert len(plugin.control.runs()) == 1
    clock.now += 2  # past cacheDuration: the next request runs the plugin again
    await client.resolve(subject)
    assert len(plugin.control.runs()) == 2
    # Without cacheDuration the provider's defaultCacheDuration applies (5m here).
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth)
    clock.now += 31
    await client.resolve(subject)
    assert len(plugin.control.runs()) == 3
    clock.now += 299
    await client.resolve(subject)
    assert len(plugin.control.runs()) == 3
    clock.now += 2
    await client.resolve(subject)
    assert len(plugin.control.runs()) == 4


async def test_default_cache_duration_and_zero(private: Private, plugin: Setup, client_factory: Any) -> None:
    plugin.control.set(cacheKeyType="Registry", cacheDuration="0s", auth=private.good_auth)
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host])))
    subject = ref(private.ref("creds/app"))
    await client.resolve(subject)
    await client.resolve(subject)
    assert len(plugin.control.runs()) == 2, "cacheDuration 0 means: not cached"
    other = client_factory(
        registries(private, credentialProviders=plugin.section([private.host], default_cache_duration="0s"))
    )
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth)
    await other.resolve(subject)
    await other.resolve(subject)
    assert len(plugin.control.runs()) == 4, "no cacheDuration and defaultCacheDuration 0: not cached"


async def test_a_burst_runs_the_plugin_once_per_cache_key(private: Private, plugin: Setup, client_factory: Any) -> None:
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth)
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host])))
    subjects = [ref(private.ref(repo, tag)) for repo in private.repos for tag in ("v1", "v2")]
    await asyncio.gather(*(client.resolve(s) for s in subjects))
    assert len(plugin.control.runs()) == 1
    # Per-image answers: a cold burst on one image shares one run; another image needs its own.
    plugin.control.set(cacheKeyType="Image", auth=private.good_auth)
    image_client = client_factory(registries(private, credentialProviders=plugin.section([private.host])))
    same = [ref(private.ref("creds/other", tag)) for tag in ("v1", "v2") for _ in range(4)]
    await asyncio.gather(*(image_client.resolve(s) for s in [*same, ref(private.ref("team/web"))]))
    images = sorted(r["image"] for r in plugin.control.runs()[1:])
    assert images == [f"{private.host}/creds/other", f"{private.host}/team/web"]


# -- matching ---------------------------------------------------------------------------------------------


async def test_match_images_decide_whether_the_plugin_runs(
    private: Private, plugin: Setup, client_factory: Any
) -> None:
    plugin.control.set(auth=private.good_auth)
    port = private.host.rsplit(":", 1)[1]
    section = plugin.section([f"{private.host}/team", f"*.1:{port}"])  # the second has too few labels
    client = client_factory(registries(private, credentialProviders=section))
    await client.resolve(ref(private.ref("team/private/app")))
    with pytest.raises(AuthDeniedError):
        await client.resolve(ref(private.ref("creds/app")))
    assert [r["image"] for r in plugin.control.runs()] == [f"{private.host}/team/private/app"]
    wildcard = client_factory(registries(private, credentialProviders=plugin.section([f"*.0.0.1:{port}"])))
    await wildcard.resolve(ref(private.ref("creds/app")))
    assert len(plugin.control.runs()) == 2


async def test_the_most_specific_key_of_the_answer_is_used(
    private: Private, plugin: Setup, client_factory: Any
) -> None:
    good = private.good_auth[private.host]
    plugin.control.set(
        cacheKeyType="Registry",
        auth={
            private.host: {"username": "alice", "password": "wrong-for-the-registry"},
            f"{private.host}/team": good,
            f"{private.host}/team/private": {"username": "alice", "password": "also-wrong"},
            f"{private.host}/team/private/app": good,
        },
    )
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host])))
    await client.resolve(ref(private.ref("team/private/app")))
    await client.resolve(ref(private.ref("team/web")))
    with pytest.raises(AuthDeniedError):
        await client.resolve(ref(private.ref("creds/app")))
    assert len(plugin.control.runs()) == 1


def _pull_secret(path: Path, auths: dict[str, tuple[str, str]]) -> Path:
    doc = {"auths": {k: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for k, (u, p) in auths.items()}}
    path.write_text(json.dumps(doc))
    return path


async def test_pull_secrets_and_providers_most_specific_first(
    private: Private, plugin: Setup, client_factory: Any, tmp_path: Path
) -> None:
    assert private.registry.password is not None
    good = ("alice", private.registry.password)
    bad = ("alice", "stale-password")
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth)
    secrets = [
        str(_pull_secret(tmp_path / "host.json", {private.host: bad})),
        str(_pull_secret(tmp_path / "app.json", {f"{private.host}/creds/app": good})),
    ]
    section = registries(private, pullSecrets=secrets, credentialProviders=plugin.section([f"{private.host}/team"]))
    client = client_factory(section)
    # creds/app: the pull secret for the repository beats the one for the host; no plugin run
    await client.resolve(ref(private.ref("creds/app")))
    assert plugin.control.runs() == []
    # team/web: the provider's matchImages (host/team) is more specific than the host-wide pull secret
    await client.resolve(ref(private.ref("team/web")))
    assert len(plugin.control.runs()) == 1
    # creds/other: only the host-wide (stale) pull secret matches
    with pytest.raises(AuthDeniedError):
        await client.resolve(ref(private.ref("creds/other")))
    # equal specificity: the pull secret listed first wins
    first_good = [
        str(_pull_secret(tmp_path / "good.json", {private.host: good})),
        str(_pull_secret(tmp_path / "bad.json", {private.host: bad})),
    ]
    await client_factory(registries(private, pullSecrets=first_good)).resolve(ref(private.ref("creds/other")))
    with pytest.raises(AuthDeniedError):
        await client_factory(registries(private, pullSecrets=first_good[::-1])).resolve(ref(private.ref("creds/other")))


async def test_service_account_token_mode(private: Private, plugin: Setup, client_factory: Any, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-projected-token\n")
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth)
    attributes = {
        "serviceAccountTokenAudience": "registry.example",
        "requireServiceAccount": True,
        "cacheType": "Token",
        "requiredServiceAccountAnnotationKeys": ["example.com/role"],
        "optionalServiceAccountAnnotationKeys": ["example.com/region"],
    }
    section = plugin.section(
        [private.host],
        provider={"tokenAttributes": attributes},
        serviceAccountTokens=[{"audience": "registry.example", "path": str(token)}],
        serviceAccountAnnotations={"example.com/role": "reader", "unrelated.com/x": "not sent"},
    )
    client = client_factory(registries(private, credentialProviders=section))
    subject = ref(private.ref("creds/app"))
    await client.resolve(subject)
    await client.resolve(subject)
    (run,) = plugin.control.runs()
    assert run["token"] == "first-projected-token"
    assert run["annotations"] == {"example.com/role": "reader"}
    # cacheType Token: a rotated token is a new cache key, so the plugin runs again with it
    token.write_text("second-projected-token-rotated\n")
    await client.resolve(subject)
    await client.resolve(subject)
    assert [r["token"] for r in plugin.control.runs()] == ["first-projected-token", "second-projected-token-rotated"]
    # cacheType ServiceAccount: the cache outlives token rotation
    attributes["cacheType"] = "ServiceAccount"
    service_account = client_factory(
        registries(
            private,
            credentialProviders=plugin.section(
                [private.host],
                provider={"tokenAttributes": attributes},
                serviceAccountTokens=[{"audience": "registry.example", "path": str(token)}],
                serviceAccountAnnotations={"example.com/role": "reader"},
            ),
        )
    )
    await service_account.resolve(subject)
    token.write_text("third-projected-token-rotated-again\n")
    await service_account.resolve(subject)
    assert len(plugin.control.runs()) == 3


# -- failures: each is a transient error for the key, never an allow ---------------------------------------------


def _assert_provider_error(exc: BaseException, reason: str) -> None:
    assert isinstance(exc, CredentialProviderError), exc
    assert exc.transient and exc.code == "CREDENTIAL_PROVIDER_FAILED"
    assert reason in str(exc), str(exc)
    for secret in (SECRET_ON_STDERR, "s3cret"):
        assert secret not in str(exc)


@pytest.fixture
def captured_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    logs.configure("debug", json_output=True)

    def read() -> str:
        return capsys.readouterr().err

    yield read
    logs.configure("info", json_output=False)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"mode": "garbage"}, "stdout is not JSON"),
        ({"mode": "wrong-kind"}, "kind is not CredentialProviderResponse"),
        ({"mode": "wrong-api"}, "apiVersion is not credentialprovider.kubelet.k8s.io/v1"),
        ({"mode": "bad-key-type"}, "cacheKeyType must be one of"),
        ({"mode": "huge"}, "stdout exceeds 65536 bytes"),
        ({"mode": "exit", "exitCode": 7}, "exited with status 7 (stderr: 21 bytes, not logged)"),
    ],
)
async def test_plugin_failures_are_transient_errors_and_leak_nothing(
    private: Private,
    plugin: Setup,
    client_factory: Any,
    captured_logs: Callable[[], str],
    settings: dict[str, Any],
    reason: str,
) -> None:
    plugin.control.set(auth=private.good_auth, stderr=SECRET_ON_STDERR, **settings)
    client = client_factory(
        registries(private, credentialProviders=plugin.section([private.host], maxOutputBytes="64KiB"))
    )
    with pytest.raises(ProviderError) as caught:
        await client.resolve(ref(private.ref("creds/app")))
    _assert_provider_error(caught.value, reason)
    # nothing was requested from the registry with or without credentials
    assert client.request_count == 0
    # failures are not cached: the next request runs the plugin again
    with pytest.raises(CredentialProviderError):
        await client.resolve(ref(private.ref("creds/app")))
    assert len(plugin.control.runs()) == 2
    text = captured_logs()
    assert "credential_provider_failed" in text
    for secret in (SECRET_ON_STDERR, "s3cret"):
        assert secret not in text


async def test_secrets_on_stderr_of_a_working_plugin_stay_out_of_the_logs(
    private: Private, plugin: Setup, client_factory: Any, captured_logs: Callable[[], str]
) -> None:
    plugin.control.set(auth=private.good_auth, stderr=SECRET_ON_STDERR)
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host])))
    await client.resolve(ref(private.ref("creds/app")))
    text = captured_logs()
    assert "credential_provider_ran" in text
    assert SECRET_ON_STDERR not in text and "s3cret" not in text


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.05)


async def test_a_plugin_that_hangs_is_killed_with_its_children(
    private: Private, plugin: Setup, client_factory: Any
) -> None:
    plugin.control.set(mode="sleep", auth=private.good_auth)
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host], execTimeout="1s")))
    with pytest.raises(ProviderError) as caught:
        await client.resolve(ref(private.ref("creds/app")))
    _assert_provider_error(caught.value, "timed out after 1s (killed)")
    (run,) = plugin.control.runs()
    await _until(lambda: not _alive(run["pid"]), "the plugin process to be gone")
    grandchildren = plugin.control.grandchildren()
    assert grandchildren, "the plugin started its grandchild before hanging"
    await _until(lambda: not any(_alive(pid) for pid in grandchildren), "the plugin's child to be gone")


async def test_the_request_deadline_bounds_the_wait_but_not_the_run(
    private: Private, plugin: Setup, client_factory: Any
) -> None:
    from provider import deadline

    plugin.control.set(mode="sleep", auth=private.good_auth)
    client = client_factory(registries(private, credentialProviders=plugin.section([private.host], execTimeout="2s")))
    with deadline.deadline_after(0.2), pytest.raises(DeadlineExceededError, match="credential provider"):
        await client.resolve(ref(private.ref("creds/app")))
    # the run goes on in the background and ends by its own timeout, with its process group killed
    await _until(lambda: len(plugin.control.runs()) == 1, "the plugin to start")
    (run,) = plugin.control.runs()
    await _until(lambda: not _alive(run["pid"]), "the plugin process to be killed")


@pytest.mark.parametrize("version", ["v1beta1", "v1alpha1"])
async def test_older_api_versions(private: Private, plugin: Setup, client_factory: Any, version: str) -> None:
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth)
    config = provider_config(
        plugin.directory,
        plugin.control,
        [private.host],
        api_version=f"credentialprovider.kubelet.k8s.io/{version}",
        config_api_version=f"kubelet.config.k8s.io/{version}",
    )
    client = client_factory(
        registries(private, credentialProviders={"config": str(config), "binDir": str(plugin.bin_dir)})
    )
    await client.resolve(ref(private.ref("creds/app")))
    (run,) = plugin.control.runs()
    assert run["apiVersion"] == f"credentialprovider.kubelet.k8s.io/{version}"
