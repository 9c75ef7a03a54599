"""The adversarial verification matrix (issue #13 item 5), one row per attack by someone who can push to the
registry but holds no trusted key. Every row must be denied, and for the specific reason the row names.

Rows on images run through :class:`~provider.executor.Engine` against Debian's docker-registry (and the referrers API
test double where the OCI 1.1 API is needed); rows on signature material alone (keyless identities, Notation scopes,
bundles and envelopes replayed) run the configured verifier on the real vectors in ``tests/vectors/``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.config import load_config
from provider.executor import Engine
from provider.oci import Descriptor
from provider.reference import compute_digest
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
)
from tests.support.figures import Figures
from tests.support.paths import VECTORS
from tests.support.referee import write_config
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess
from tests.support.sigstore_sign import MemorySource, artifact_request, build_verifier, layer
from tests.unit.notation_helpers import params as notation_params
from tests.unit.notation_helpers import policy as notation_policy
from tests.unit.notation_helpers import verify as notation_verify

COSIGN = VECTORS / "cosign"
NOTATION = VECTORS / "notation"
BUNDLES = VECTORS / "sigstore-bundle" / "cosign-oci-attestation"
BUNDLE_DIGEST = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
MITR = {"identity": "mitr@redhat.com", "issuer": "https://github.com/login/oauth"}
PUBLIC_GOOD = VECTORS / "sigstore-bundle" / "trusted_root.public-good.json"


@dataclass
class World:
    registry: RegistryProcess
    proxy: ReferrersProxy
    key: ec.EllipticCurvePrivateKey
    key_file: Path
    other_file: Path
    tmp: Path
    engines: list[Engine]
    counter: int = 0

    def image(self, repo: str, base_url: str | None = None) -> dict[str, Any]:
        self.counter += 1
        image = make_image(f"adversarial/{repo}/{self.counter}")
        push_image(base_url or self.registry.url, repo, f"v{self.counter}", image)
        image["tag"] = f"v{self.counter}"
        return image

    def config(self, *, hosts: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "registries": {
                "allow": ["127.0.0.1:*"],
                "hosts": hosts
                or [{"host": self.registry.host, "plainHttp": True}, {"host": self.proxy.host, "plainHttp": True}],
            },
            "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(self.key_file)]}],
            "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        }
        doc.update(extra)
        return doc

    def engine(self, config: dict[str, Any], name: str = "referee.yaml") -> Engine:
        engine = Engine(load_config(write_config(self.tmp / name, config)))
        self.engines.append(engine)
        return engine

    async def judge(self, config: dict[str, Any], key: str) -> tuple[bool, str]:
        outcome = await self.engine(config).verify_key(key)
        return _verdict(outcome)


def _verdict(outcome: Any) -> tuple[bool, str]:
    if outcome.verdict is None:
        return False, str(outcome.error)
    verdict = outcome.verdict
    return verdict.allowed, json.dumps(verdict.to_json()["reason"]) + " " + " ".join(verdict.notes)


Row = Callable[[World], Awaitable[tuple[bool, str]]]


# -- replays onto another digest, repository, registry ------------------------------------------------------------


async def cosign_replayed_onto_another_digest(world: World) -> tuple[bool, str]:
    genuine, target = world.image("adv/replay"), world.image("adv/replay")
    cosign_sign_legacy(world.registry.url, "adv/replay", genuine["digest"], world.key)
    cosign_sign_legacy(
        world.registry.url, "adv/replay", target["digest"], world.key, digest_in_payload=genuine["digest"]
    )
    return await world.judge(world.config(), f"{world.registry.host}/adv/replay:{target['tag']}")


async def cosign_replayed_onto_another_repository(world: World) -> tuple[bool, str]:
    genuine, target = world.image("adv/origin"), world.image("adv/elsewhere")
    cosign_sign_legacy(world.registry.url, "adv/origin", genuine["digest"], world.key)
    cosign_sign_legacy(
        world.registry.url,
        "adv/elsewhere",
        target["digest"],
        world.key,
        digest_in_payload=genuine["digest"],
        docker_reference=f"{world.registry.host}/adv/origin",
    )
    return await world.judge(world.config(), f"{world.registry.host}/adv/elsewhere:{target['tag']}")


async def cosign_replayed_onto_another_registry(world: World) -> tuple[bool, str]:
    genuine = world.image("adv/cross")
    target = world.image("adv/cross-registry")
    cosign_sign_legacy(world.registry.url, "adv/cross", genuine["digest"], world.key)
    cosign_sign_legacy(
        world.registry.url, "adv/cross-registry", target["digest"], world.key, digest_in_payload=genuine["digest"]
    )
    return await world.judge(world.config(), f"{world.proxy.host}/adv/cross-registry:{target['tag']}")


async def signed_digest_not_signed_on_another_registry(world: World) -> tuple[bool, str]:
    """The same digest on another registry name: the signature lives only on the first one."""
    image = world.image("adv/only-here")
    cosign_sign_legacy(world.registry.url, "adv/only-here", image["digest"], world.key)
    engine = world.engine(world.config())
    allowed = await engine.verify_key(f"{world.registry.host}/adv/only-here@{image['digest']}")
    assert allowed.verdict is not None and allowed.verdict.allowed
    world.proxy.mode = "passthrough"
    other = f"{world.proxy.host}/adv/only-here-too@{image['digest']}"
    push_image(world.registry.url, "adv/only-here-too", None, image)
    return _verdict(await engine.verify_key(other))


# -- listings --------------------------------------------------------------------------------------------------


def _oci11_signature(world: World, repo: str, subject: dict[str, Any], signs: str) -> bytes:
    payload = cosign_payload(f"{world.registry.host}/{repo}", signs)
    sig_layer = (
        mt.COSIGN_SIMPLESIGNING,
        payload,
        {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(world.key, payload)},
    )
    manifest, blobs = make_artifact_manifest(subject, mt.COSIGN_OCI11_SIGNATURE, [sig_layer])
    push_artifact(world.registry.url, repo, manifest, blobs)
    return manifest


async def referrer_whose_subject_names_another_image(world: World) -> tuple[bool, str]:
    genuine, target = world.image("adv/subject"), world.image("adv/subject")
    manifest = _oci11_signature(world, "adv/subject", genuine["descriptor"], genuine["digest"])
    push_fallback_index(world.registry.url, "adv/subject", target["digest"], [referrer_descriptor(manifest)])
    return await world.judge(world.config(), f"{world.registry.host}/adv/subject:{target['tag']}")


async def artifact_type_spoofing(world: World) -> tuple[bool, str]:
    """The listing claims a cosign signature; the manifest is an SBOM (unsigned, and not a signature)."""
    target = world.image("adv/spoof")
    sbom, blobs = make_artifact_manifest(
        target["descriptor"], mt.SPDX_JSON, [(mt.SPDX_JSON, b'{"spdxVersion":"SPDX-2.3"}', None)]
    )
    push_artifact(world.registry.url, "adv/spoof", sbom, blobs)
    listed = referrer_descriptor(sbom)
    listed["artifactType"] = mt.COSIGN_OCI11_SIGNATURE
    push_fallback_index(world.registry.url, "adv/spoof", target["digest"], [listed], merge=False)
    return await world.judge(world.config(), f"{world.registry.host}/adv/spoof:{target['tag']}")


async def duplicate_referrers_do_not_count_twice(world: World) -> tuple[bool, str]:
    """A rule needing two signatures; the one genuine signature is listed three times."""
    target = world.image("adv/dup")
    manifest = _oci11_signature(world, "adv/dup", target["descriptor"], target["digest"])
    desc = referrer_descriptor(manifest)
    push_fallback_index(world.registry.url, "adv/dup", target["digest"], [desc, dict(desc), dict(desc)], merge=False)
    policy = {"type": "rules", "rules": [{"name": "two-signatures", "verifiers": ["cosign-ci"], "minCount": 2}]}
    return await world.judge(world.config(policy=policy), f"{world.registry.host}/adv/dup:{target['tag']}")


async def excess_referrers(world: World) -> tuple[bool, str]:
    """300 junk signatures listed through the referrers API, no genuine one."""
    target = world.image("adv/excess")
    for i in range(300):
        world.proxy.add_referrer(
            "adv/excess",
            target["digest"],
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": f"sha256:{i:064x}",
                "size": 100,
                "artifactType": mt.COSIGN_OCI11_SIGNATURE,
            },
        )
    hosts = [{"host": world.proxy.host, "plainHttp": True, "referrersApi": "always"}]
    config = world.config(hosts=hosts, limits={"maxReferrers": 8})
    return await world.judge(config, f"{world.proxy.host}/adv/excess:{target['tag']}")


# -- caches --------------------------------------------------------------------------------------------------------


async def verdict_cache_across_configuration_generations(world: World) -> tuple[bool, str]:
    image = world.image("adv/generation")
    cosign_sign_legacy(world.registry.url, "adv/generation", image["digest"], world.key)
    key = f"{world.registry.host}/adv/generation:{image['tag']}"
    engine = world.engine(world.config(cache={"verdictTtl": "1h", "tagTtl": "1h"}))
    first = await engine.verify_key(key)
    assert first.verdict is not None and first.verdict.allowed
    rotated = world.config(cache={"verdictTtl": "1h", "tagTtl": "1h"})
    rotated["verifiers"][0]["keys"] = [str(world.other_file)]
    engine.swap(load_config(write_config(world.tmp / "rotated.yaml", rotated)))
    return _verdict(await engine.verify_key(key))


async def tag_cache_across_registries(world: World) -> tuple[bool, str]:
    """``app:v1`` is signed on one registry; the same name on another registry is a different, unsigned image."""
    signed, unsigned = world.image("adv/tagged"), make_image("adversarial/tagged/other")
    cosign_sign_legacy(world.registry.url, "adv/tagged", signed["digest"], world.key)
    engine = world.engine(world.config(cache={"verdictTtl": "1h", "tagTtl": "1h"}))
    first = await engine.verify_key(f"{world.registry.host}/adv/tagged:{signed['tag']}")
    assert first.verdict is not None and first.verdict.allowed
    push_image(world.registry.url, "adv/tagged-elsewhere", signed["tag"], unsigned)
    world.proxy.mode = "passthrough"
    return _verdict(await engine.verify_key(f"{world.proxy.host}/adv/tagged-elsewhere:{signed['tag']}"))


# -- signature material alone (real vectors) --------------------------------------------------------------------


def _keyless(identity: dict[str, str]) -> Row:
    async def row(world: World) -> tuple[bool, str]:
        case = COSIGN / "fulcio-rekor-valid"
        verifier = build_verifier(
            {
                "name": "sig",
                "type": "cosign",
                "identities": [identity],
                "fulcioRoots": [str(COSIGN / "keys" / "fulcio_v1.crt.pem")],
                "rekorKeys": [str(COSIGN / "keys" / "rekor.pub")],
                "ctLogKeys": _ct_logs(),
            }
        )
        source = MemorySource()
        descriptor = json.loads((case / "layer-descriptor.json").read_text())
        import hashlib

        subject = "sha256:" + hashlib.sha256((case / "image-manifest.json").read_bytes()).hexdigest()
        layers = [
            layer(source, mt.COSIGN_SIMPLESIGNING, (case / "payload.json").read_bytes(), descriptor["annotations"])
        ]
        request = artifact_request(source, layers, subject_digest=subject, artifact_type=mt.COSIGN_LEGACY_SIGNATURES)
        result = await verifier.verify(request)
        return result.succeeded, result.reason

    return row


def _ct_logs() -> list[str]:
    from tests.support.sigstore_sign import ct_log_pems

    return ct_log_pems(PUBLIC_GOOD)


async def bundle_replayed_onto_another_digest(world: World) -> tuple[bool, str]:
    verifier = build_verifier(
        {
            "name": "bundles",
            "type": "sigstore-bundle",
            "trustedRoot": str(BUNDLES / "trusted_root_pgi.json"),
            "identities": [{"identity": "cody@soyland.com", "issuer": "https://github.com/login/oauth"}],
        }
    )
    source = MemorySource()
    layers = [layer(source, mt.SIGSTORE_BUNDLE_V03, (BUNDLES / "oci-attestation.sigstore.json").read_bytes())]
    request = artifact_request(
        source, layers, subject_digest="sha256:" + "3" * 64, artifact_type=mt.SIGSTORE_BUNDLE_V03
    )
    result = await verifier.verify(request)
    return result.succeeded, result.reason


def _notation(
    scopes: list[str] | None = None, repository: str = "registry.example/app", digest: str | None = None
) -> Row:
    async def row(world: World) -> tuple[bool, str]:
        envelope_dir = NOTATION / "envelopes" / "alpine-jws"
        doc = notation_policy(["ca:alpine"])
        if scopes is not None:
            doc["trustPolicies"][0]["registryScopes"] = scopes
        p = notation_params(
            {"trustPolicy": doc, "trustStores": {"ca": {"alpine": [str(envelope_dir / "alpine-leaf.crt")]}}}
        )
        raw = (envelope_dir / "target-manifest.json").read_bytes()
        target = Descriptor(mt.OCI_MANIFEST, digest or compute_digest(raw), len(raw))
        envelope = (envelope_dir / "jws_signature.sig").read_bytes()
        result = await notation_verify(p, envelope, "application/jose+json", target, repository=repository)
        return result.succeeded, result.reason

    return row


async def _control_rows_pass(world: World) -> None:
    """The genuine material these rows tamper with verifies (so a denial is the attack's doing)."""
    allowed, reason = await _keyless(MITR)(world)
    assert allowed, reason
    allowed, reason = await _notation(["registry.example/app"])(world)
    assert allowed, reason


ROWS: dict[str, tuple[str, Row, str]] = {
    # name: (category, row, the reason the denial must give)
    "cosign signature replayed onto another digest": (
        "replay",
        cosign_replayed_onto_another_digest,
        "signature valid but payload signs",
    ),
    "cosign signature replayed onto another repository": (
        "replay",
        cosign_replayed_onto_another_repository,
        "signature valid but payload signs",
    ),
    "cosign signature replayed onto another registry": (
        "replay",
        cosign_replayed_onto_another_registry,
        "signature valid but payload signs",
    ),
    "signed digest, asked for on another registry": (
        "replay",
        signed_digest_not_signed_on_another_registry,
        "no matching artifact found",
    ),
    "Sigstore bundle (attestation) replayed onto another digest": (
        "replay",
        bundle_replayed_onto_another_digest,
        "do not include the image digest",
    ),
    "Notation envelope replayed onto another digest": (
        "replay",
        _notation(["registry.example/app"], digest="sha256:" + "4" * 64),
        "the signature is for sha256:19dbd2e48e92",
    ),
    "referrer whose subject names another image": (
        "listing",
        referrer_whose_subject_names_another_image,
        "SUBJECT_MISMATCH",
    ),
    "artifactType spoofing (an SBOM listed as a signature)": (
        "listing",
        artifact_type_spoofing,
        "no cosign simple-signing layer",
    ),
    "one signature listed three times for a rule needing two": (
        "listing",
        duplicate_referrers_do_not_count_twice,
        "1 of 2 verified artifacts",
    ),
    "300 junk referrers, no genuine one": ("listing", excess_referrers, "stopped at 32 entries"),
    "keyless identity: configured identity is a prefix": (
        "keyless",
        _keyless({**MITR, "identity": "mitr@redhat.co"}),
        "matches none of the configured identities",
    ),
    "keyless identity: configured identity is a suffix": (
        "keyless",
        _keyless({**MITR, "identity": "itr@redhat.com"}),
        "matches none of the configured identities",
    ),
    "keyless identity: case differs": (
        "keyless",
        _keyless({**MITR, "identity": "MITR@redhat.com"}),
        "matches none of the configured identities",
    ),
    "keyless identity: configured identity is longer": (
        "keyless",
        _keyless({**MITR, "identity": "mitr@redhat.com.example"}),
        "matches none of the configured identities",
    ),
    "keyless identity: URI form of the e-mail SAN": (
        "keyless",
        _keyless({**MITR, "identity": "mailto:mitr@redhat.com"}),
        "matches none of the configured identities",
    ),
    "keyless issuer: a prefix of the real issuer": (
        "keyless",
        _keyless({**MITR, "issuer": "https://github.com/login"}),
        "matches none of the configured identities",
    ),
    "keyless issuer: trailing slash": (
        "keyless",
        _keyless({**MITR, "issuer": "https://github.com/login/oauth/"}),
        "matches none of the configured identities",
    ),
    "keyless issuer: another issuer": (
        "keyless",
        _keyless({**MITR, "issuer": "https://accounts.google.com"}),
        "matches none of the configured identities",
    ),
    "Notation scope: another repository": (
        "notation-scope",
        _notation(["registry.example/app2"]),
        "no trust policy applies to",
    ),
    "Notation scope: a prefix of the repository": (
        "notation-scope",
        _notation(["registry.example/ap"]),
        "no trust policy applies to",
    ),
    "Notation scope: a sub-repository": (
        "notation-scope",
        _notation(["registry.example/app"], repository="registry.example/app/sub"),
        "no trust policy applies to",
    ),
    "Notation scope: case differs": (
        "notation-scope",
        _notation(["Registry.example/app"]),
        "no trust policy applies to",
    ),
    "Notation scope: another registry": (
        "notation-scope",
        _notation(["registry.example.com/app"]),
        "no trust policy applies to",
    ),
    "verdict cache across configuration generations (key rotated out)": (
        "cache",
        verdict_cache_across_configuration_generations,
        "does not verify with any of 1 configured keys",
    ),
    "tag cache across registries (same name, other registry)": (
        "cache",
        tag_cache_across_registries,
        "no matching artifact found",
    ),
}


@pytest.fixture(scope="module")
def other_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.integration.conftest import public_pem

    path = tmp_path_factory.mktemp("adv-keys") / "other.pub"
    path.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    return path


@pytest.fixture
async def world(
    registry: RegistryProcess,
    referrers_proxy: ReferrersProxy,
    cosign_key: tuple[ec.EllipticCurvePrivateKey, Path],
    other_key_file: Path,
    tmp_path: Path,
) -> AsyncIterator[World]:
    engines: list[Engine] = []
    yield World(registry, referrers_proxy, cosign_key[0], cosign_key[1], other_key_file, tmp_path, engines)
    for engine in engines:
        await engine.close()


async def test_the_genuine_material_verifies(world: World) -> None:
    await _control_rows_pass(world)


@pytest.mark.parametrize("name", list(ROWS))
async def test_attack_is_denied_with_its_reason(world: World, name: str, figures: Figures) -> None:
    category, row, reason = ROWS[name]
    allowed, said = await row(world)
    assert not allowed, (name, said)
    assert reason in said, (name, said)
    figures.record("adversarial", name, category=category, outcome="denied", reason=reason, wrongly_allowed=0)
