"""Issue #21: the attacks of the adversarial review, each reproduced against a real registry (and the referrers
test double where the OCI 1.1 API is needed — no installable registry serves it). The attacker can push to the
image's repository (manifests, the ``sha256-<hex>`` tag-schema index, annotations) but holds no trusted key.

A1 — a stale signed report passes as fresh through a rewritten listing annotation.
A2 — report rollback through junk referrers that outrank or crowd out the genuine newest report.
A3 — a token realm with user information (``https://127.0.0.1:P@localhost:E/token``) gets credentials.
A4 — an unsigned VEX document of a type the ``vex-signed`` rule does not name suppresses a CRITICAL finding.
Also: referrer floods that crowd out genuine evidence, and the denial they cause being cached.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.config import load_config
from provider.executor import Engine
from provider.verifiers.vulnreport import VulnReportPlugin
from tests.integration.conftest import public_pem
from tests.support.content import (
    cosign_payload,
    cosign_sign_legacy,
    cosign_sign_payload,
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_fallback_index,
    push_image,
    referrer_descriptor,
    sha256_digest,
)
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess, ServerThread

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NESTED = [mt.SARIF_JSON, mt.OPENVEX_JSON, mt.OPENVEX_JSON_SHORT]


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _sarif(findings: list[tuple[str, str]]) -> bytes:
    rules = [{"id": cve, "properties": {"tags": ["vulnerability", "security", severity]}} for cve, severity in findings]
    results = [{"ruleId": cve, "message": {"text": f"Package: openssl\n{cve}"}} for cve, _ in findings]
    run = {"tool": {"driver": {"name": "Trivy", "version": "0.50.0", "rules": rules}}, "results": results}
    return json.dumps({"version": "2.1.0", "runs": [run]}).encode()


def _openvex(image_digest: str, cve: str) -> bytes:
    statement = {
        "vulnerability": {"name": cve},
        "products": [{"@id": f"registry.example/app@{image_digest}"}],
        "status": "not_affected",
        "justification": "vulnerable_code_not_in_execute_path",
    }
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": f"https://example.com/vex/{cve}",
        "author": "mallory",
        "timestamp": _stamp(NOW - timedelta(hours=2)),
        "version": 1,
        "statements": [statement],
    }
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def ci_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("attack-keys") / "ci.pub"
    path.write_bytes(public_pem(key))
    return key, path


@dataclass
class Image:
    """One image in a repository of ``base_url`` and the artifacts attached to it."""

    base_url: str
    host: str
    repo: str
    tag: str
    key: ec.EllipticCurvePrivateKey
    image: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = make_image(f"attack/{self.repo}/{self.tag}/{secrets.token_hex(4)}")
        push_image(self.base_url, self.repo, self.tag, self.image)

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"

    def artifact(self, artifact_type: str, body: bytes, created: str | None) -> bytes:
        annotations = {mt.ANNOTATION_CREATED: created} if created is not None else None
        manifest, blobs = make_artifact_manifest(
            self.image["descriptor"], artifact_type, [(artifact_type, body, None)], annotations
        )
        push_artifact(self.base_url, self.repo, manifest, blobs)
        return manifest

    def sign_legacy(self, manifest: bytes) -> None:
        """cosign's legacy ``.sig`` tag on an artifact manifest (a signature on the report itself)."""
        cosign_sign_legacy(self.base_url, self.repo, sha256_digest(manifest), self.key)

    def sign_referrer(self, manifest: bytes) -> None:
        """A cosign OCI 1.1 signature referrer of an artifact manifest."""
        subject = {"mediaType": mt.OCI_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest)}
        payload = cosign_payload(f"{self.host}/{self.repo}", subject["digest"])
        layer = (
            mt.COSIGN_SIMPLESIGNING,
            payload,
            {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(self.key, payload)},
        )
        sig_manifest, sig_blobs = make_artifact_manifest(subject, mt.COSIGN_OCI11_SIGNATURE, [layer])
        push_artifact(self.base_url, self.repo, sig_manifest, sig_blobs)


def _config(
    tmp_path: Path,
    hosts: list[dict[str, Any]],
    key_file: Path,
    pki: Pki | None = None,
    *,
    vex_rule_types: list[str] | None = None,
    **vuln: Any,
) -> Path:
    vex_rule: dict[str, Any] = {
        "name": "vex-signed",
        "verifiers": ["vex"],
        "match": "every",
        "minCount": 0,
        "nested": {"verifiers": ["cosign-ci"]},
    }
    if vex_rule_types is not None:
        vex_rule["artifactTypes"] = vex_rule_types
    doc: dict[str, Any] = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": hosts},
        "verifiers": [
            {"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]},
            {"name": "vulns", "type": "vulnerability-report", "maxSeverity": "HIGH", "maximumAge": "168h", **vuln},
            {"name": "vex", "type": "vex"},
        ],
        "policy": {
            "type": "rules",
            "rules": [
                {
                    "name": "report-signed",
                    "verifiers": ["vulns"],
                    "match": "any",
                    "nested": {"verifiers": ["cosign-ci"]},
                },
                vex_rule,
            ],
        },
        "limits": {"maxNestedDepth": 1, "nestedArtifactTypes": NESTED},
        "cache": {"verdictTtl": 0},
    }
    if pki is not None:
        doc["server"] = server_section(pki)
    return write_config(tmp_path / "referee.yaml", doc)


@pytest.fixture
async def engines() -> AsyncIterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        await engine.close()


def _engine(engines: list[Engine], path: Path, **kwargs: Any) -> Engine:
    engine = Engine(load_config(path), clock=lambda: NOW, **kwargs)
    engines.append(engine)
    return engine


def _reports(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["digest"]: a for a in verdict["artifacts"] if a["verifier"] == "vulns"}


# -- A1 ------------------------------------------------------------------------------------------------------------


async def test_a1_a_rewritten_listing_annotation_cannot_make_a_stale_report_fresh(
    registry: RegistryProcess, pki: Pki, tmp_path: Path, ci_key: tuple[ec.EllipticCurvePrivateKey, Path]
) -> None:
    key, key_file = ci_key
    img = Image(registry.url, registry.host, "attack/a1", "v1", key)
    clean = img.artifact(mt.SARIF_JSON, _sarif([("CVE-2024-1", "LOW")]), _stamp(NOW - timedelta(days=60)))
    critical = img.artifact(mt.SARIF_JSON, _sarif([("CVE-2024-2", "CRITICAL")]), _stamp(NOW - timedelta(hours=1)))
    img.sign_legacy(clean)
    img.sign_legacy(critical)
    # The attacker rewrites the tag-schema index: the old report's descriptor claims to be fresh, the new one is gone.
    forged = referrer_descriptor(clean)
    forged["annotations"] = {mt.ANNOTATION_CREATED: _stamp(NOW)}
    push_fallback_index(registry.url, img.repo, img.image["digest"], [forged], merge=False)

    config = _config(tmp_path, [{"host": registry.host, "plainHttp": True}], key_file, pki)
    async with running_referee(config, pki, clock=lambda: NOW) as referee:
        verdict = items_by_key(await referee.verify([img.ref]))[img.ref]["value"]
    assert verdict["allowed"] is False
    [report] = _reports(verdict).values()
    assert report["digest"] == sha256_digest(clean)
    assert report["details"]["reportCreated"] == _stamp(NOW - timedelta(days=60))
    assert report["details"]["reportCreatedSource"] == "manifest-annotation"
    assert "report is 60d0h old" in report["reason"] and "older than the maximum 7d0h" in verdict["reason"]


# -- A2 ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("junk", [15, 16, 70])
async def test_a2_junk_referrers_can_neither_outrank_nor_crowd_out_the_newest_signed_report(
    referrers_proxy: ReferrersProxy,
    registry: RegistryProcess,
    tmp_path: Path,
    engines: list[Engine],
    ci_key: tuple[ec.EllipticCurvePrivateKey, Path],
    junk: int,
) -> None:
    key, key_file = ci_key
    proxy = referrers_proxy
    img = Image(proxy.url, proxy.host, "attack/a2", f"junk-{junk}", key)
    clean = img.artifact(mt.SARIF_JSON, _sarif([("CVE-2024-1", "LOW")]), _stamp(NOW - timedelta(days=3)))
    critical = img.artifact(mt.SARIF_JSON, _sarif([("CVE-2024-2", "CRITICAL")]), _stamp(NOW - timedelta(hours=1)))
    img.sign_referrer(clean)
    img.sign_referrer(critical)
    for i in range(junk):
        created = f"9999-junk-{i:02}" if i % 2 else "9999-12-31T00:00:00Z"
        img.artifact(mt.SARIF_JSON, _sarif([(f"CVE-2024-{1000 + i}", "LOW")]), created)

    hosts = [{"host": proxy.host, "plainHttp": True, "referrersApi": "always"}]
    engine = _engine(engines, _config(tmp_path, hosts, key_file))
    outcome = await engine.verify_key(img.ref)
    assert outcome.verdict is not None, outcome.error
    verdict = outcome.verdict.to_json()
    assert verdict["allowed"] is False, verdict["reason"]
    reports = _reports(verdict)
    newest = reports.get(sha256_digest(critical))
    if junk <= 64:
        assert newest is not None and "CVE-2024-2 (CRITICAL" in newest["reason"]
        assert reports[sha256_digest(clean)]["details"]["supersededBy"] == sha256_digest(critical)
        assert verdict["complete"] is True
    else:
        # More reports than limits.maxReferrers: the newest cannot be established, so nothing counts.
        assert verdict["complete"] is False, (len(reports), verdict["notes"])
        assert any("not examined (limits.maxReferrers 64)" in n for n in verdict["notes"])
        assert not any(r["succeeded"] for r in reports.values())


# -- A3 ------------------------------------------------------------------------------------------------------------


class _TLSApp(ServerThread):
    """An aiohttp app over TLS on 127.0.0.1 recording every request it gets."""

    def __init__(self, handler: Any, cert: trustme.LeafCert) -> None:
        super().__init__()
        self._handler = handler
        self._cert = cert
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    def build_app(self) -> web.Application:
        async def record(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.requests.append((request.method, request.path_qs, dict(request.headers), body))
            response: web.StreamResponse = await self._handler(request)
            return response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return app

    async def _start(self) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ctx).start()
        self._runner = runner


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def token_sink(tls_ca: trustme.CA) -> Iterator[_TLSApp]:
    """Where an attacker wants credentials to go (reachable as ``localhost``)."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"token": "stolen", "expires_in": 300})

    with _TLSApp(answer, tls_ca.issue_cert("localhost", "127.0.0.1")) as sink:
        yield sink


def _challenging_registry(tls_ca: trustme.CA, realm: str) -> _TLSApp:
    async def challenge(request: web.Request) -> web.Response:
        headers = {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry"'}
        return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401, headers=headers)

    return _TLSApp(challenge, tls_ca.issue_cert("127.0.0.1"))


@pytest.mark.parametrize("credentials", ["identitytoken", "password"])
async def test_a3_a_token_realm_with_user_information_gets_no_credentials(
    tls_ca: trustme.CA,
    token_sink: _TLSApp,
    tmp_path: Path,
    engines: list[Engine],
    ci_key: tuple[ec.EllipticCurvePrivateKey, Path],
    credentials: str,
) -> None:
    _, key_file = ci_key
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    realm = f"https://127.0.0.1:1@localhost:{token_sink.port}/token"
    with _challenging_registry(tls_ca, realm) as registry:
        entry = {"identitytoken": "refresh-secret"} if credentials == "identitytoken" else {"auth": "dXNlcjpzZWNyZXQ="}
        docker_config = tmp_path / "config.json"
        docker_config.write_text(json.dumps({"auths": {registry.host: entry}}))
        config = _config(tmp_path, [{"host": registry.host, "caFile": str(ca_file)}], key_file)
        doc = yaml.safe_load(config.read_text())
        doc["registries"]["dockerConfig"] = str(docker_config)
        engine = _engine(engines, write_config(tmp_path / "a3.yaml", doc))
        outcome = await engine.verify_key(f"{registry.host}/attack/a3:v1")
    assert token_sink.requests == [], "the realm host received a request (credentials leaked)"
    assert outcome.error is not None and outcome.error.code == "AUTH_DENIED", outcome
    assert "user information" in outcome.error.message


async def test_credentials_go_only_to_the_registry_or_a_configured_token_realm(
    tls_ca: trustme.CA,
    token_sink: _TLSApp,
    tmp_path: Path,
    engines: list[Engine],
    ci_key: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    """A realm on another host that ``registries.allow`` admits gets anonymous token requests only, unless it is
    listed in the registry's ``tokenRealms``."""
    _, key_file = ci_key
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    realm = f"https://{token_sink.host}/token"
    with _challenging_registry(tls_ca, realm) as registry:
        base = {"host": registry.host, "caFile": str(ca_file)}
        sink = {"host": token_sink.host, "caFile": str(ca_file)}
        for name, host, expect_credentials in [
            ("anonymous", base, False),
            ("unlisted", {**base, "username": "u", "password": "secret"}, None),
            ("listed", {**base, "username": "u", "password": "secret", "tokenRealms": [token_sink.host]}, True),
        ]:
            (tmp_path / name).mkdir()
            token_sink.requests.clear()
            engine = _engine(engines, _config(tmp_path / name, [host, sink], key_file))
            outcome = await engine.verify_key(f"{registry.host}/attack/realm:v1")
            assert outcome.error is not None, name
            if expect_credentials is None:
                assert outcome.error.code == "AUTH_DENIED" and "tokenRealms" in outcome.error.message
                assert token_sink.requests == [], name
                continue
            assert token_sink.requests, name
            sent = "Authorization" in token_sink.requests[0][2]
            assert sent is expect_credentials, name


# -- A4 ------------------------------------------------------------------------------------------------------------


async def test_a4_configuration_check_refuses_a_vex_rule_that_misses_a_type_the_report_verifier_reads(
    tmp_path: Path, ci_key: tuple[ec.EllipticCurvePrivateKey, Path]
) -> None:
    from provider.errors import ConfigError

    _, key_file = ci_key
    config = _config(tmp_path, [], key_file, vex_rule_types=[mt.OPENVEX_JSON], vex={"enabled": True})
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    assert any(p.startswith("verifiers[1]: vex.enabled: VEX documents suppress findings") for p in exc.value.problems)


async def test_a4_an_unsigned_vex_document_never_suppresses_even_if_the_configuration_check_is_missed(
    registry: RegistryProcess,
    tmp_path: Path,
    engines: list[Engine],
    ci_key: tuple[ec.EllipticCurvePrivateKey, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, key_file = ci_key
    # The accepted configuration of the attack: the configuration check as it was (it ignored artifact types).
    monkeypatch.setattr(VulnReportPlugin, "check_configuration", lambda *args: [])
    config = _config(
        tmp_path,
        [{"host": registry.host, "plainHttp": True}],
        key_file,
        vex_rule_types=[mt.OPENVEX_JSON],
        vex={"enabled": True},
    )
    img = Image(registry.url, registry.host, "attack/a4", "v1", key)
    report = img.artifact(mt.SARIF_JSON, _sarif([("CVE-2024-9", "CRITICAL")]), _stamp(NOW - timedelta(hours=1)))
    img.sign_legacy(report)
    unsigned_vex = img.artifact(mt.OPENVEX_JSON_SHORT, _openvex(img.image["digest"], "CVE-2024-9"), None)
    push_fallback_index(registry.url, img.repo, img.image["digest"], [report, unsigned_vex])
    engine = _engine(engines, config)
    outcome = await engine.verify_key(img.ref)
    assert outcome.verdict is not None, outcome.error
    verdict = outcome.verdict.to_json()
    assert verdict["allowed"] is False, verdict["reason"]
    [result] = _reports(verdict).values()
    assert result["details"]["suppressions"] == [] and result["details"]["highestSeverity"] == "CRITICAL"
    assert result["details"]["vexErrors"] == [
        f"{sha256_digest(unsigned_vex)[:19]}: not used: not verified with the signatures the policy requires"
    ]

    # Control: the same statement, signed and of the type the rule names, does suppress the finding.
    signed_vex = img.artifact(mt.OPENVEX_JSON, _openvex(img.image["digest"], "CVE-2024-9"), None)
    img.sign_legacy(signed_vex)
    push_fallback_index(registry.url, img.repo, img.image["digest"], [report, signed_vex], merge=False)
    allowed = (await engine.verify_key(img.ref)).verdict
    assert allowed is not None and allowed.allowed, allowed
    [result] = _reports(allowed.to_json()).values()
    assert result["details"]["vexDocuments"] == [sha256_digest(signed_vex)]


# -- referrer floods ----------------------------------------------------------------------------------------------


def _flood(img: Image, count: int, *, fetchable: bool) -> list[dict[str, Any]]:
    """Referrers of the cosign OCI 1.1 signature type claiming to be newer than anything: pushed manifests with a
    signature by an unknown key, or bare descriptors of nothing."""
    out: list[dict[str, Any]] = []
    stranger = ec.generate_private_key(ec.SECP256R1())
    for i in range(count):
        if fetchable:
            payload = cosign_payload(f"{img.host}/{img.repo}", img.image["digest"])
            layer = (
                mt.COSIGN_SIMPLESIGNING,
                payload,
                {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(stranger, payload)},
            )
            manifest, blobs = make_artifact_manifest(
                img.image["descriptor"], mt.COSIGN_OCI11_SIGNATURE, [layer], {mt.ANNOTATION_CREATED: f"9999-{i}"}
            )
            push_artifact(img.base_url, img.repo, manifest, blobs)
            out.append(referrer_descriptor(manifest))
        else:
            digest = "sha256:" + secrets.token_hex(32)
            out.append(
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": digest,
                    "size": 500,
                    "artifactType": mt.COSIGN_OCI11_SIGNATURE,
                    "annotations": {mt.ANNOTATION_CREATED: "9999-12-31T00:00:00Z"},
                }
            )
    return out


def _signature_config(tmp_path: Path, registry: RegistryProcess, key_file: Path, **limits: Any) -> Path:
    doc = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "limits": limits,
        "cache": {"verdictTtl": "300s", "tagTtl": "5s"},
    }
    return write_config(tmp_path / "signatures.yaml", doc)


async def test_a_referrer_flood_cannot_crowd_out_a_legacy_signature(
    registry: RegistryProcess, tmp_path: Path, engines: list[Engine], ci_key: tuple[ec.EllipticCurvePrivateKey, Path]
) -> None:
    key, key_file = ci_key
    img = Image(registry.url, registry.host, "attack/flood-legacy", "v1", key)
    cosign_sign_legacy(registry.url, img.repo, img.image["digest"], key)
    flood = _flood(img, 30, fetchable=True)
    push_fallback_index(registry.url, img.repo, img.image["digest"], flood, merge=False)
    engine = _engine(engines, _signature_config(tmp_path, registry, key_file, maxReferrers=8))
    outcome = await engine.verify_key(img.ref)
    assert outcome.verdict is not None and outcome.verdict.allowed, outcome
    assert outcome.verdict.complete is False
    assert any("not examined (limits.maxReferrers 8)" in note for note in outcome.verdict.notes)


async def test_a_verdict_decided_under_a_cap_says_so_and_is_not_cached_as_a_plain_denial(
    registry: RegistryProcess, tmp_path: Path, engines: list[Engine], ci_key: tuple[ec.EllipticCurvePrivateKey, Path]
) -> None:
    key, key_file = ci_key
    img = Image(registry.url, registry.host, "attack/flood-capped", "v1", key)
    payload = cosign_payload(f"{img.host}/{img.repo}", img.image["digest"])
    layer = (mt.COSIGN_SIMPLESIGNING, payload, {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(key, payload)})
    manifest, blobs = make_artifact_manifest(img.image["descriptor"], mt.COSIGN_OCI11_SIGNATURE, [layer])
    push_artifact(registry.url, img.repo, manifest, blobs)
    genuine = referrer_descriptor(manifest)
    flood = _flood(img, 12, fetchable=True)
    push_fallback_index(registry.url, img.repo, img.image["digest"], [*flood, genuine], merge=False)

    clock = [1000.0]
    engine = _engine(
        engines, _signature_config(tmp_path, registry, key_file, maxReferrers=8), monotonic=lambda: clock[0]
    )
    denied = (await engine.verify_key(img.ref)).verdict
    assert denied is not None and not denied.allowed
    assert denied.complete is False
    note = "5 referrers of type application/vnd.dev.cosign.artifact.sig.v1+json were not examined"
    assert note in denied.decision.reason
    capped = [a for a in denied.artifacts if a.error == "REFERRERS_CAPPED"]
    assert len(capped) == 1 and capped[0].verifier == "cosign-ci"

    # The attacker's flood is gone; the denial must not outlive the short partial-verdict TTL (tagTtl 5 s).
    push_fallback_index(registry.url, img.repo, img.image["digest"], [genuine], merge=False)
    assert (await engine.verify_key(img.ref)).cached is True
    clock[0] += 6
    again = await engine.verify_key(img.ref)
    assert again.verdict is not None and again.verdict.allowed and not again.cached, again


async def test_oci_layout_drops_index_entries_claiming_referees_internal_legacy_types(tmp_path: Path) -> None:
    """A fallback index entry typed as Referee's synthetic cosign-legacy type must not pass as a legacy tag."""
    from provider.oci import Descriptor
    from provider.reference import parse_reference
    from provider.stores.oci_layout import OCILayoutStore
    from tests.support.referee import write_layout

    image = make_image("layout-legacy-claim")
    sig, sig_blobs = make_artifact_manifest(
        image["descriptor"], mt.COSIGN_OCI11_SIGNATURE, [(mt.COSIGN_SIMPLESIGNING, b"{}", None)]
    )
    claimed = referrer_descriptor(sig)
    claimed["artifactType"] = mt.COSIGN_LEGACY_SIGNATURES
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [claimed]}).encode()
    tag = "sha256-" + image["digest"].split(":")[1]
    layout = write_layout(
        tmp_path / "layout",
        [(image["manifest"], mt.OCI_MANIFEST, "app:v1"), (index, mt.OCI_INDEX, tag), (sig, mt.OCI_MANIFEST, None)],
        [image["config"], *image["layers"], *sig_blobs.values()],
    )
    store = OCILayoutStore("layout", layout, 4 * 1024 * 1024)
    subject = Descriptor(mt.OCI_MANIFEST, image["digest"], image["size"])
    listing = await store.list_referrers(parse_reference("app:v1"), subject, None)
    assert [d.artifact_type for d in listing.descriptors] == [mt.COSIGN_OCI11_SIGNATURE]


# -- review finding: flooding the newest report's own signatures -----------------------------------------------


def _signature_on(img: Image, artifact: bytes, key: ec.EllipticCurvePrivateKey, note: str = "") -> bytes:
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": sha256_digest(artifact), "size": len(artifact)}
    payload = cosign_payload(f"{img.host}/{img.repo}", subject["digest"])
    layer = (mt.COSIGN_SIMPLESIGNING, payload, {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(key, payload)})
    manifest, blobs = make_artifact_manifest(subject, mt.COSIGN_OCI11_SIGNATURE, [layer], {"n": note} if note else None)
    push_artifact(img.base_url, img.repo, manifest, blobs)
    return manifest


async def test_flooding_the_newest_reports_signatures_cannot_roll_back_to_an_older_report(
    registry: RegistryProcess, tmp_path: Path, engines: list[Engine], ci_key: tuple[ec.EllipticCurvePrivateKey, Path]
) -> None:
    """The attacker cannot remove the CRITICAL report's signature, but lists junk signatures before it in the
    report's own fallback index so that the genuine one is beyond ``maxReferrers``: the report's signature status is
    then unknown, and the newest report cannot be established — denied, not rolled back to the older clean one."""
    key, key_file = ci_key
    img = Image(registry.url, registry.host, "attack/nested-flood", "v1", key)
    clean = img.artifact(mt.SARIF_JSON, _sarif([("CVE-2024-1", "LOW")]), _stamp(NOW - timedelta(days=3)))
    critical = img.artifact(mt.SARIF_JSON, _sarif([("CVE-2024-2", "CRITICAL")]), _stamp(NOW - timedelta(hours=1)))
    push_fallback_index(registry.url, img.repo, img.image["digest"], [clean, critical], merge=False)
    push_fallback_index(registry.url, img.repo, sha256_digest(clean), [_signature_on(img, clean, key)], merge=False)
    genuine = _signature_on(img, critical, key)
    stranger = ec.generate_private_key(ec.SECP256R1())
    junk = [_signature_on(img, critical, stranger, str(i)) for i in range(4)]
    push_fallback_index(registry.url, img.repo, sha256_digest(critical), [*junk, genuine], merge=False)
    doc = yaml.safe_load(_config(tmp_path, [{"host": registry.host, "plainHttp": True}], key_file).read_text())
    doc["limits"]["maxReferrers"] = 4
    engine = _engine(engines, write_config(tmp_path / "capped.yaml", doc))
    verdict = (await engine.verify_key(img.ref)).verdict
    assert verdict is not None
    assert verdict.allowed is False, verdict.decision.reason
    assert verdict.complete is False
    reports = _reports(verdict.to_json())
    clean_result = reports[sha256_digest(clean)]
    assert clean_result["succeeded"] is False
    assert clean_result["reason"].startswith("the newest report cannot be established: the signatures of report")


# -- second review: evidence-store redirects with user information --------------------------------------------


async def test_an_evidence_store_never_follows_a_redirect_with_user_information() -> None:
    """``https://127.0.0.1:5000@127.0.0.2:P/`` once matched ``127.0.0.1:*`` as a whole string and the store
    connected to 127.0.0.2, a host no allow entry names."""
    import asyncio

    from provider.config import RegistriesConfig
    from provider.errors import ProviderError
    from provider.stores.http import HttpSettings, StoreHttp

    contacted: list[str] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        contacted.append(str(writer.get_extra_info("sockname")))
        writer.close()

    target = await asyncio.start_server(on_connect, "127.0.0.2", 0)
    target_port = target.sockets[0].getsockname()[1]

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"https://127.0.0.1:5000@127.0.0.2:{target_port}/signature-1")

    app = web.Application()
    app.router.add_get("/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    http = StoreHttp(
        "lookaside", HttpSettings(plain_http=True, max_attempts=1), RegistriesConfig(allow=("127.0.0.1:*",))
    )
    try:
        with pytest.raises(ProviderError) as exc:
            await http.get(f"http://127.0.0.1:{port}/app@sha256=x/signature-1", headers={}, max_bytes=1024, what="sig")
        await asyncio.sleep(0.1)
    finally:
        await http.close()
        await runner.cleanup()
        target.close()
    assert contacted == []
    assert "refusing redirect" in str(exc.value)


# -- second review: verdicts of a tag-sensitive identity check are per tag ----------------------------------------


def _atomic_signature(reference: str, digest: str) -> bytes:
    document = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "atomic container signature",
        },
        "optional": {},
    }
    return json.dumps(document).encode()


@pytest.mark.parametrize("mode", ["matchExact", "matchRepoDigestOrExact"])
async def test_a_verdict_for_one_tag_is_never_served_for_another_tag_of_the_same_digest(
    registry: RegistryProcess, tmp_path: Path, engines: list[Engine], mode: str
) -> None:
    """A containers/image signature names ``repo:v1``; the attacker pushes ``repo:v2`` at the same digest. Whatever
    is asked first, ``v1`` is allowed and ``v2`` denied."""
    import pysequoia

    from provider.stores.lookaside import signature_path

    repo = f"attack/tag-cache-{mode.lower()}"
    image = make_image(f"{repo}/{secrets.token_hex(4)}")
    for tag in ("v1", "v2"):
        push_image(registry.url, repo, tag, image)
    key = pysequoia.Tsk.generate("Release <release@example.org>")
    signed = pysequoia.sign(key.signer(), _atomic_signature(f"{registry.host}/{repo}:v1", image["digest"]), armor=False)
    store = tmp_path / "sigstore"
    path = store / signature_path(repo, image["digest"], 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(signed)
    config = write_config(
        tmp_path / "c.yaml",
        {
            "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
            "stores": [{"name": "sigstore", "type": "lookaside", "path": str(store)}],
            "verifiers": [
                {"name": "release", "type": "pgp", "keys": [str(key.extract_certificate())], "signedIdentity": mode}
            ],
            "policy": {"type": "required-verifiers", "required": ["release"]},
        },
    )
    for order in (("v2", "v1"), ("v1", "v2")):
        engine = _engine(engines, config)
        verdicts = {tag: (await engine.verify_key(f"{registry.host}/{repo}:{tag}")).verdict for tag in order}
        assert verdicts["v1"] is not None and verdicts["v1"].allowed, (order, verdicts["v1"])
        assert verdicts["v2"] is not None and not verdicts["v2"].allowed, order
