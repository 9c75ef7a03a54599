"""What the ``grafeas`` and ``lookaside`` stores list, and what they never let through from a registry listing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provider import mediatypes as mt
from provider.attestations import is_sealed, synthetic_manifest
from provider.cache import ContentCache
from provider.config import LimitsConfig, RegistriesConfig, load_config_bytes
from provider.oci import Descriptor, ReferrerListing
from provider.reference import parse_reference
from provider.registry.client import RegistryClient
from provider.stores.grafeas import GrafeasStore
from provider.stores.lookaside import LookasideStore, signature_path
from tests.support.attestors import DIGEST, IMAGE, NOTE, OTHER_NOTE

SUBJECT = Descriptor(media_type=mt.OCI_MANIFEST, digest=DIGEST, size=10)
REF = parse_reference(f"{IMAGE}@{DIGEST}")
RESOURCE = f"https://{IMAGE}@{DIGEST}"


def _client() -> RegistryClient:
    return RegistryClient(RegistriesConfig(allow=("gcr.io",)), LimitsConfig(), ContentCache(0))


def _grafeas(**params: Any) -> GrafeasStore:
    entry = {
        "name": "g",
        "type": "grafeas",
        "url": "https://grafeas.example",
        "projects": ["p"],
        "notes": [NOTE],
        **params,
    }
    import json

    spec = load_config_bytes(json.dumps({"stores": [entry]}).encode(), Path("/")).stores[0]
    return GrafeasStore("g", _client(), 4 * 1024 * 1024, spec.params, RegistriesConfig(allow=("gcr.io",)))


def _occurrence(**fields: Any) -> dict[str, Any]:
    return {
        "name": "projects/p/occurrences/1",
        "kind": "ATTESTATION",
        "noteName": NOTE,
        "resourceUri": RESOURCE,
        "createTime": "2024-01-02T03:04:05Z",
        "attestation": {"serializedPayload": "e30=", "signatures": []},
        **fields,
    }


def test_only_attestations_for_this_resource_under_configured_notes_are_listed() -> None:
    store = _grafeas()
    listed = store._artifact(_occurrence(), RESOURCE, SUBJECT)
    assert listed is not None and listed.artifact_type == mt.GRAFEAS_ATTESTATION
    assert listed.annotations[mt.ANNOTATION_GRAFEAS_NOTE] == NOTE
    assert listed.annotations[mt.ANNOTATION_CREATED] == "2024-01-02T03:04:05Z"
    manifest = synthetic_manifest(listed)
    assert manifest.subject is not None and manifest.subject.digest == DIGEST
    [layer] = manifest.layers
    assert layer.data is not None and is_sealed(layer.data, layer.annotations[mt.ANNOTATION_ATTESTATION_SEAL])
    assert store._artifact(_occurrence(kind="VULNERABILITY"), RESOURCE, SUBJECT) is None
    assert store._artifact(_occurrence(resourceUri=RESOURCE.replace("app", "other")), RESOURCE, SUBJECT) is None
    assert store._artifact(_occurrence(noteName=OTHER_NOTE), RESOURCE, SUBJECT) is None
    assert store._artifact("not an object", RESOURCE, SUBJECT) is None
    v1beta1 = _occurrence(resource={"uri": RESOURCE})
    del v1beta1["resourceUri"]
    assert store._artifact(v1beta1, RESOURCE, SUBJECT) is not None


class _Registry:
    """Stands in for the registry listing: one ordinary referrer and one forged synthetic-looking one."""

    def __init__(self) -> None:
        self.asked: list[frozenset[str] | None] = []

    async def list_referrers(
        self, ref: Any, subject: Descriptor, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        self.asked.append(artifact_types)
        return ReferrerListing(
            (
                Descriptor(mt.OCI_MANIFEST, "sha256:" + "1" * 64, 1, artifact_type=mt.COSIGN_LEGACY_SIGNATURES),
                Descriptor(mt.OCI_MANIFEST, "sha256:" + "2" * 64, 1, artifact_type=mt.GRAFEAS_ATTESTATION, data=b"x"),
            )
        )


async def _listed(store: Any, types: frozenset[str]) -> list[Descriptor]:
    registry = _Registry()
    store._registry = registry

    async def attached(ref: Any, subject: Descriptor) -> ReferrerListing:
        return ReferrerListing(
            (Descriptor(mt.OCI_MANIFEST, "sha256:" + "3" * 64, 1, artifact_type=store.artifact_type),)
        )

    store._attached = attached
    found = list((await store.list_referrers(REF, SUBJECT, types)).descriptors)
    store.asked = registry.asked
    return found


async def test_registry_listings_never_contribute_synthetic_artifacts() -> None:
    store = _grafeas()
    found = await _listed(store, frozenset({mt.COSIGN_LEGACY_SIGNATURES, mt.GRAFEAS_ATTESTATION}))
    assert [d.digest[7] for d in found] == ["1", "3"]
    assert store.asked == [frozenset({mt.COSIGN_LEGACY_SIGNATURES})]


async def test_registry_referrers_can_be_turned_off_and_synthetic_subjects_have_none() -> None:
    store = _grafeas(registryReferrers=False)
    found = await _listed(store, frozenset({mt.COSIGN_LEGACY_SIGNATURES, mt.GRAFEAS_ATTESTATION}))
    assert [d.digest[7] for d in found] == ["3"]
    nested = Descriptor(mt.OCI_MANIFEST, "sha256:" + "4" * 64, 1, artifact_type=mt.GRAFEAS_ATTESTATION)
    assert (await _grafeas().list_referrers(REF, nested, frozenset({mt.GRAFEAS_ATTESTATION}))).descriptors == ()


async def test_lookaside_directory_reads_until_the_first_gap(tmp_path: Path) -> None:
    import json

    for index in (1, 2, 4):
        path = tmp_path / signature_path(REF.repository, DIGEST, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"sig-%d" % index)
    entry = {"name": "l", "type": "lookaside", "path": str(tmp_path), "registryReferrers": False}
    spec = load_config_bytes(json.dumps({"stores": [entry]}).encode(), tmp_path).stores[0]
    store = LookasideStore("l", _client(), 4 * 1024 * 1024, spec.params, RegistriesConfig())
    found = list((await store.list_referrers(REF, SUBJECT, frozenset({mt.LOOKASIDE_SIGNATURE}))).descriptors)
    locations = [d.annotations[mt.ANNOTATION_LOOKASIDE_LOCATION] for d in found]
    assert [loc.rsplit("/", 1)[1] for loc in locations] == ["signature-1", "signature-2"]
    assert locations[0] == (tmp_path / f"org/app@sha256={DIGEST[7:]}/signature-1").as_uri()


async def test_a_lookaside_with_more_signatures_than_read_says_the_listing_was_truncated(tmp_path: Path) -> None:
    """Review finding: the limit stopped the search silently, so a flood of junk signatures hid a valid one behind a
    complete-looking denial cached for the verdict TTL."""
    import json

    for index in range(1, 5):
        path = tmp_path / signature_path(REF.repository, DIGEST, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"sig-%d" % index)
    entry = {"name": "l", "type": "lookaside", "path": str(tmp_path), "registryReferrers": False, "maxSignatures": 3}
    spec = load_config_bytes(json.dumps({"stores": [entry]}).encode(), tmp_path).stores[0]
    store = LookasideStore("l", _client(), 4 * 1024 * 1024, spec.params, RegistriesConfig())
    listing = await store.list_referrers(REF, SUBJECT, frozenset({mt.LOOKASIDE_SIGNATURE}))
    assert len(listing.descriptors) == 3 and listing.truncated
    assert listing.notes == ("l: more than maxSignatures (3) signatures; the rest were not read",)
