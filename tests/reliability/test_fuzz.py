"""Property-based fuzzing (issue #13 item 2) with hypothesis: everything that arrives from the network — ProviderRequest
bodies, image references, manifests and indexes, referrers lists, signature envelopes (cosign, Notation JWS and COSE,
DSSE, Sigstore bundles), SBOM, SARIF and VEX documents — and configuration files.

Property: nothing escapes but the documented error types (``ProviderError`` subclasses: ``RequestInvalidError``,
``ReferenceInvalidError``, ``ManifestInvalidError``, ``ConfigError``, …); a verifier returns a result or raises a
``ProviderError`` (anything else is a crash the executor reports as ``INTERNAL_ERROR``); and the live server always
answers a well-formed ProviderResponse.

The ``ci`` hypothesis profile (the suite) runs a bounded, derandomized number of examples per target; ``fuzz``
(``scripts/fuzz``) runs thousands with random seeds. Every example run is counted into docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider import mediatypes as mt
from provider.config import load_config_bytes
from provider.errors import ProviderError
from provider.oci import listed_referrers, parse_index_descriptors, parse_manifest
from provider.reference import compute_digest, parse_reference
from provider.server import protocol
from provider.server.app import RefereeServer
from tests.reliability.harness import check_response
from tests.support.content import cosign_sign_payload
from tests.support.figures import Figures
from tests.support.paths import VECTORS
from tests.support.referee import Pki, provider_request, server_section, write_config
from tests.support.registry import LoopThread, RegistryProcess
from tests.support.sigstore_sign import MemorySource, artifact_request, build_verifier, layer

PROFILE = os.environ.get("REFEREE_HYPOTHESIS_PROFILE", "ci")
COMMON = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
settings.register_profile("ci", max_examples=100, derandomize=True, **COMMON)
settings.register_profile("fuzz", max_examples=int(os.environ.get("REFEREE_FUZZ_EXAMPLES", "3000")), **COMMON)
CI = PROFILE == "ci"


class Counter:
    def __init__(self) -> None:
        self.examples: dict[str, int] = {}

    def hit(self, target: str) -> None:
        self.examples[target] = self.examples.get(target, 0) + 1


COUNTS = Counter()


@pytest.fixture(autouse=True)
def _record(request: pytest.FixtureRequest, figures: Figures) -> Iterator[None]:
    target = TARGETS.get(request.node.originalname)
    before = COUNTS.examples.get(target or "", 0)
    yield
    if target is not None:
        run = COUNTS.examples.get(target, 0) - before
        figures.record("fuzz", target, examples_count=run, crashes_count=0, profile=PROFILE)


# -- strategies --------------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
REF_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEF0123456789-._:/@+ \t\n\u00e9\u0000\u202e"
ref_text = st.one_of(
    st.text(alphabet=REF_ALPHABET, max_size=80),
    st.text(max_size=60),
    st.builds(
        lambda host, repo, tag, digest: f"{host}/{repo}{tag}{digest}",
        st.sampled_from(["registry.example", "127.0.0.1:5000", "localhost", "[::1]:5000", "a" * 300, "", "UPPER.io"]),
        st.from_regex(r"[a-z0-9]+([._/-][a-z0-9]+){0,4}", fullmatch=True),
        st.one_of(st.just(""), st.from_regex(r":[\w][\w.-]{0,140}", fullmatch=True)),
        st.one_of(
            st.just(""),
            st.from_regex(r"@sha256:[0-9a-f]{64}", fullmatch=True),
            st.from_regex(r"@[a-z0-9]{1,10}:[0-9a-zA-Z=_-]{1,100}", fullmatch=True),
        ),
    ),
)


def _deep(depth: int) -> bytes:
    return (
        b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":'
        + (b"[" * depth + b"]" * depth)
        + b"}}"
    )


request_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.one_of(ref_text, json_values), max_size=20).map(
        lambda keys: json.dumps(provider_request(keys)).encode()
    ),
    st.fixed_dictionaries(
        {
            "apiVersion": st.one_of(st.sampled_from(protocol.API_VERSIONS), json_values),
            "kind": st.one_of(st.just("ProviderRequest"), json_values),
            "request": st.one_of(
                st.fixed_dictionaries({"keys": st.one_of(json_values, st.lists(ref_text))}), json_values
            ),
        }
    ).map(lambda doc: json.dumps(doc).encode()),
    st.integers(min_value=1, max_value=200_000).map(_deep),
    st.lists(ref_text, max_size=5).map(
        lambda keys: (
            '{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","kind":"Pod",'
            f'"request":{{"keys":{json.dumps(keys)},"keys":["x"]}}}}'
        ).encode()
    ),
    st.just(json.dumps(provider_request([f"registry.example/app:{i}" for i in range(10_000)])).encode()),
    st.just(json.dumps(provider_request([f"registry.example/app:{i}" for i in range(10_001)])).encode()),
    st.binary(min_size=1, max_size=50).map(lambda b: json.dumps(provider_request(["x"])).encode()[:-3] + b),
)


@st.composite
def mutated(draw: st.DrawFn, document: Any, depth: int = 0) -> Any:
    """``document`` with random parts replaced, dropped, or re-typed (the shapes a hostile pusher writes)."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(json_values)
    if isinstance(document, dict) and document and depth < 6:
        out = dict(document)
        for key in draw(st.lists(st.sampled_from(sorted(out)), max_size=3, unique=True)):
            action = draw(st.integers(0, 3))
            if action == 0:
                del out[key]
            elif action == 1:
                out[key] = draw(json_values)
            else:
                out[key] = draw(mutated(out[key], depth + 1))
        return out
    if isinstance(document, list) and document and depth < 6:
        out_list = list(document)
        index = draw(st.integers(0, len(out_list) - 1))
        out_list[index] = draw(mutated(out_list[index], depth + 1))
        if draw(st.booleans()):
            out_list.append(draw(json_values))
        return out_list
    if isinstance(document, str) and choice < 4:
        return draw(st.text(max_size=60))
    return document


def fuzzed_bytes(document: Any) -> st.SearchStrategy[bytes]:
    """Serialised mutations of ``document``, byte flips of it, truncations, and invalid UTF-8."""
    raw = json.dumps(document).encode()
    return st.one_of(
        mutated(document).map(lambda d: json.dumps(d).encode()),
        st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
            lambda f: raw[: f[0]] + bytes([f[1]]) + raw[f[0] + 1 :]
        ),
        st.integers(0, len(raw)).map(lambda n: raw[:n]),
        st.binary(max_size=200).map(lambda b: b"\xff\xfe" + b),
    )


def _vector(*parts: str) -> Any:
    return json.loads((VECTORS.joinpath(*parts)).read_bytes())


def _attempt(call: Callable[[], Any]) -> tuple[Any, ProviderError | None]:
    """``call()``'s result, or the documented error it raised (anything else propagates: a crash)."""
    try:
        return call(), None
    except ProviderError as exc:
        return None, exc


# -- pure parsers ------------------------------------------------------------------------------------------------


@settings(parent=settings.get_profile(PROFILE))
@given(request_bodies)
def test_provider_request_bodies(body: bytes) -> None:
    COUNTS.hit(TARGETS["test_provider_request_bodies"])
    request, error = _attempt(lambda: protocol.parse_request(body, 10_000))
    if error is not None:
        assert error.code == "REQUEST_INVALID", error
        return
    assert all(isinstance(k, str) for k in request.keys) and len(request.keys) <= 10_000


@settings(parent=settings.get_profile(PROFILE))
@given(ref_text)
def test_image_references(text: str) -> None:
    COUNTS.hit(TARGETS["test_image_references"])
    ref, error = _attempt(lambda: parse_reference(text))
    if error is not None:
        assert error.code == "REFERENCE_INVALID", error
        return
    assert ref.registry and ref.repository and (ref.tag or ref.digest)
    assert parse_reference(str(ref)) == ref


MANIFEST = _vector("cosign", "key-valid", "image-manifest.json")
INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": 10, "artifactType": mt.SPDX_JSON},
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": "sha256:" + "b" * 64,
            "size": 10,
            "annotations": {mt.ANNOTATION_CREATED: "2026-01-01T00:00:00Z"},
        },
    ],
}


@settings(parent=settings.get_profile(PROFILE))
@given(
    st.one_of(fuzzed_bytes(MANIFEST), fuzzed_bytes(INDEX)), st.sampled_from([None, *mt.SUPPORTED_MANIFEST_TYPES, "x/y"])
)
def test_manifests_and_indexes(raw: bytes, media_type: str | None) -> None:
    COUNTS.hit(TARGETS["test_manifests_and_indexes"])
    try:
        manifest = parse_manifest(raw, compute_digest(raw), media_type)
    except ProviderError:
        return
    assert manifest.descriptor.digest == compute_digest(raw)


@settings(parent=settings.get_profile(PROFILE))
@given(fuzzed_bytes(INDEX), st.sets(st.sampled_from([mt.SPDX_JSON, mt.SARIF_JSON, ""]), max_size=2))
def test_referrers_lists(raw: bytes, wanted: set[str]) -> None:
    COUNTS.hit(TARGETS["test_referrers_lists"])
    try:
        descriptors = parse_index_descriptors(raw, "referrers")
    except ProviderError:
        return
    for d in listed_referrers(descriptors, frozenset(wanted) or None):
        assert d.digest.startswith("sha256:") or ":" in d.digest


CONFIG = {
    "registries": {"allow": ["registry.example"], "hosts": [{"host": "registry.example", "maxConcurrency": 4}]},
    "verifiers": [{"name": "c", "type": "cosign", "keys": [str(VECTORS / "cosign" / "keys" / "cosign.pub")]}],
    "policy": {"type": "required-verifiers", "required": ["c"]},
    "cache": {"verdictTtl": "5m", "tagTtl": "10s"},
    "limits": {"maxReferrers": 16},
}


@settings(parent=settings.get_profile(PROFILE))
@given(
    st.one_of(
        fuzzed_bytes(CONFIG),
        st.text(max_size=300).map(str.encode),
        st.integers(1, 5000).map(lambda n: b"a: " + b"[" * n),
        st.just(b"a: 1\na: 2\n"),
        st.just(b"x: " + b"9" * 5000),
    )
)
def test_configuration_files(raw: bytes) -> None:
    COUNTS.hit(TARGETS["test_configuration_files"])
    _, error = _attempt(lambda: load_config_bytes(raw, Path("/")))
    assert error is None or error.code == "CONFIG_INVALID", error


# -- verifiers on fuzzed artifacts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    entry: dict[str, Any]
    artifact_type: str
    layer_media_type: str
    document: Any
    subject: str = "sha256:" + "c" * 64
    annotations: Callable[[bytes], dict[str, str]] | None = None


_FUZZ_KEY = ec.generate_private_key(ec.SECP256R1())
_FUZZ_KEY_PEM = (
    _FUZZ_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
NOTATION = VECTORS / "notation"
BUNDLES = VECTORS / "sigstore-bundle" / "cosign-oci-attestation"


def _jws() -> Any:
    return json.loads((NOTATION / "envelopes" / "alpine-jws" / "jws_signature.sig").read_bytes())


VERIFIER_TARGETS: dict[str, Target] = {
    # Every fuzzed payload carries a valid signature by the configured key, so the payload parser itself is fuzzed
    # (a payload under a wrong signature is refused before it is read).
    "cosign signatures": Target(
        {"name": "v", "type": "cosign", "keys": [_FUZZ_KEY_PEM]},
        mt.COSIGN_LEGACY_SIGNATURES,
        mt.COSIGN_SIMPLESIGNING,
        _vector("cosign", "key-valid", "payload.json"),
        annotations=lambda raw: {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(_FUZZ_KEY, raw)},
    ),
    "Notation JWS envelopes": Target(
        {
            "name": "v",
            "type": "notation",
            "trustPolicyFile": str(NOTATION / "trustpolicy" / "trustpolicy.json"),
            "trustStores": {"ca": {"e2e": [str(NOTATION / "envelopes" / "alpine-jws" / "alpine-leaf.crt")]}},
        },
        mt.NOTARY_SIGNATURE,
        "application/jose+json",
        _jws(),
    ),
    "Notation COSE envelopes": Target(
        {
            "name": "v",
            "type": "notation",
            "trustPolicyFile": str(NOTATION / "trustpolicy" / "trustpolicy.json"),
            "trustStores": {"ca": {"e2e": [str(NOTATION / "envelopes" / "alpine-cose" / "alpine-leaf.crt")]}},
        },
        mt.NOTARY_SIGNATURE,
        "application/cose",
        None,
    ),
    "DSSE envelopes (in-toto attestations)": Target(
        {"name": "v", "type": "attestation", "keys": [str(VECTORS / "dsse" / "in-toto-links" / "carl.pub")]},
        mt.DSSE_ENVELOPE,
        mt.DSSE_ENVELOPE,
        {
            "payloadType": mt.INTOTO,
            "payload": base64.b64encode(b'{"_type":"x"}').decode(),
            "signatures": [{"sig": "AA=="}],
        },
    ),
    "Sigstore bundles": Target(
        {
            "name": "v",
            "type": "sigstore-bundle",
            "trustedRoot": str(BUNDLES / "trusted_root_pgi.json"),
            "identities": [{"identity": "cody@soyland.com", "issuer": "https://github.com/login/oauth"}],
        },
        mt.SIGSTORE_BUNDLE_V03,
        mt.SIGSTORE_BUNDLE_V03,
        json.loads((BUNDLES / "oci-attestation.sigstore.json").read_bytes()),
        subject="sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4",
    ),
    "SPDX SBOMs": Target(
        {"name": "v", "type": "sbom"}, mt.SPDX_JSON, mt.SPDX_JSON, _vector("sbom", "syft-0.76.0.spdx.json")
    ),
    "CycloneDX SBOMs": Target(
        {"name": "v", "type": "sbom"},
        mt.CYCLONEDX_JSON,
        mt.CYCLONEDX_JSON,
        _vector("sbom", "trivy-centos-7.cyclonedx.json"),
    ),
    "SARIF vulnerability reports": Target(
        {"name": "v", "type": "vulnerability-report", "maxSeverity": "HIGH"},
        mt.SARIF_JSON,
        mt.SARIF_JSON,
        _vector("vuln", "trivy-scan-report.sarif.json"),
    ),
    "OpenVEX documents": Target(
        {"name": "v", "type": "vex"},
        mt.OPENVEX_JSON,
        mt.OPENVEX_JSON,
        {
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": "https://example.com/vex/1",
            "author": "a",
            "timestamp": "2026-01-01T00:00:00Z",
            "version": 1,
            "statements": [
                {
                    "vulnerability": {"name": "CVE-2024-1"},
                    "products": [{"@id": "registry.example/app@sha256:" + "c" * 64}],
                    "status": "not_affected",
                    "justification": "vulnerable_code_not_present",
                }
            ],
        },
    ),
}
_VERIFIERS: dict[str, Any] = {}


def _cose_bytes() -> bytes:
    return (NOTATION / "envelopes" / "alpine-cose" / "cose_signature.sig").read_bytes()


def _payloads(name: str) -> st.SearchStrategy[bytes]:
    target = VERIFIER_TARGETS[name]
    if target.document is None:  # COSE is CBOR, not JSON
        raw = _cose_bytes()
        return st.one_of(
            st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
                lambda f: raw[: f[0]] + bytes([f[1]]) + raw[f[0] + 1 :]
            ),
            st.integers(0, len(raw)).map(lambda n: raw[:n]),
            st.binary(max_size=300),
        )
    return fuzzed_bytes(target.document)


async def _verify(name: str, blob: bytes) -> None:
    target = VERIFIER_TARGETS[name]
    verifier = _VERIFIERS.get(name)
    if verifier is None:
        verifier = _VERIFIERS[name] = build_verifier(target.entry)
    source = MemorySource()
    annotations = target.annotations(blob) if target.annotations else None
    layers = [layer(source, target.layer_media_type, blob, annotations)]
    request = artifact_request(source, layers, subject_digest=target.subject, artifact_type=target.artifact_type)
    try:
        result = await verifier.verify(request)
    except ProviderError:
        return
    assert isinstance(result.succeeded, bool) and isinstance(result.reason, str)


@pytest.mark.parametrize("name", list(VERIFIER_TARGETS))
def test_verifiers_on_fuzzed_artifacts(name: str, figures: Figures) -> None:
    count = 0

    @settings(parent=settings.get_profile(PROFILE))
    @given(_payloads(name))
    def run(blob: bytes) -> None:
        nonlocal count
        count += 1
        asyncio.run(_verify(name, blob))

    run()
    figures.record("fuzz", name, examples_count=count, crashes_count=0, profile=PROFILE)


# Inputs the long fuzz run (scripts/fuzz) found crashing, kept as fixed examples: each failed before its fix.
REGRESSIONS: dict[str, tuple[str, bytes]] = {
    # TypeError (unhashable list) in BundleChecker.verify: `media_type not in SIGSTORE_BUNDLE_TYPES`.
    "Sigstore bundle whose mediaType is a list": (
        "Sigstore bundles",
        json.dumps({**VERIFIER_TARGETS["Sigstore bundles"].document, "mediaType": []}).encode(),
    ),
    "Sigstore bundle whose mediaType is an object": (
        "Sigstore bundles",
        json.dumps({**VERIFIER_TARGETS["Sigstore bundles"].document, "mediaType": {"a": 1}}).encode(),
    ),
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_inputs_that_crashed_before(name: str) -> None:
    target, blob = REGRESSIONS[name]
    asyncio.run(_verify(target, blob))


# -- the live server ---------------------------------------------------------------------------------------------


@dataclass
class LiveServer:
    thread: LoopThread
    server: RefereeServer
    pki: Pki

    def post(self, body: bytes) -> dict[str, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=10, context=self.pki.client_context())
        try:
            conn.request("POST", "/verify", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            return json.loads(resp.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def live(registry: RegistryProcess, rel_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = dict(CONFIG)
    config["registries"] = {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]}
    config["server"] = server_section(rel_pki, providerTimeout="1s", reloadInterval="10s")
    path = write_config(tmp_path_factory.mktemp("fuzz") / "referee.yaml", config)
    thread = LoopThread("fuzz-referee")

    async def start() -> RefereeServer:
        server = RefereeServer(str(path))
        await server.start()
        return server

    server = thread.run(start())
    try:
        yield LiveServer(thread, server, rel_pki)
    finally:
        thread.run(server.stop())
        thread.stop()


@settings(
    parent=settings.get_profile(PROFILE),
    max_examples=40 if CI else int(os.environ.get("REFEREE_FUZZ_EXAMPLES", "3000")) // 2,
)
@given(
    st.one_of(
        request_bodies.filter(lambda b: len(b) < 200_000),
        st.lists(ref_text, max_size=8).map(lambda k: json.dumps(provider_request(k)).encode()),
    )
)
def test_the_live_server_answers_every_body(live: LiveServer, body: bytes) -> None:
    COUNTS.hit(TARGETS["test_the_live_server_answers_every_body"])
    document = live.post(body)
    keys: list[str] | None = None
    try:
        keys = protocol.parse_request(body, 10_000).keys
    except ProviderError:
        assert document["response"]["items"] == [] and document["response"]["systemError"].startswith("REQUEST_INVALID")
    check_response(document, keys)
    for item in document["response"]["items"]:
        value = item.get("value")
        assert not (isinstance(value, dict) and value.get("allowed")), item  # nothing fuzzed is signed


TARGETS = {
    "test_provider_request_bodies": "ProviderRequest bodies (parser)",
    "test_image_references": "image references",
    "test_manifests_and_indexes": "manifests and indexes",
    "test_referrers_lists": "referrers lists",
    "test_configuration_files": "configuration files",
    "test_the_live_server_answers_every_body": "ProviderRequest bodies through the live server",
}
