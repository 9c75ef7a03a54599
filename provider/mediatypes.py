"""Media types and annotation keys, named once."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
OCI_ARTIFACT_MANIFEST_WITHDRAWN = "application/vnd.oci.artifact.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SUPPORTED_MANIFEST_TYPES = MANIFEST_TYPES | INDEX_TYPES

ACCEPT_SUBJECT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
ACCEPT_INDEX = OCI_INDEX
ACCEPT_REFERRER = ", ".join((OCI_MANIFEST, OCI_INDEX))
ACCEPT_COSIGN_TAG = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST))

NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_OCI11_SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
INTOTO = "application/vnd.in-toto+json"
SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"

# Synthetic artifact types for cosign's legacy tag-stored evidence (``sha256-<hex>.sig`` / ``.att``).
# They are not referrers; the registry store presents them as descriptors with these types.
COSIGN_LEGACY_SIGNATURES = "application/vnd.dev.referee.cosign-legacy.sig"
COSIGN_LEGACY_ATTESTATIONS = "application/vnd.dev.referee.cosign-legacy.att"
COSIGN_LEGACY_TYPES = {COSIGN_LEGACY_SIGNATURES: ".sig", COSIGN_LEGACY_ATTESTATIONS: ".att"}

ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
ANNOTATION_COSIGN_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANNOTATION_COSIGN_CHAIN = "dev.sigstore.cosign/chain"
ANNOTATION_COSIGN_BUNDLE = "dev.sigstore.cosign/bundle"

COSIGN_SIGNATURE_TYPE = "cosign container image signature"

# Sigstore (issue 4): older bundle media types, cosign's RFC 3161 annotation and the attestation layer annotation.
SIGSTORE_BUNDLE_LEGACY = tuple(f"application/vnd.dev.sigstore.bundle+json;version=0.{n}" for n in (1, 2, 3))
SIGSTORE_BUNDLE_TYPES = frozenset({SIGSTORE_BUNDLE_V03, *SIGSTORE_BUNDLE_LEGACY})
ANNOTATION_COSIGN_RFC3161 = "dev.sigstore.cosign/rfc3161timestamp"
ANNOTATION_COSIGN_PREDICATE_TYPE = "predicateType"
ANNOTATION_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANNOTATION_BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"

# Supply-chain metadata referrers (artifact types are not standardised; these are the common ones).
SPDX_JSON = "application/spdx+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
SARIF_JSON = "application/sarif+json"
OPENVEX_JSON = "application/vnd.openvex+json"
OPENVEX_JSON_SHORT = "application/openvex+json"

# Attestor-style evidence (issue 14): synthetic artifacts presented by the ``grafeas`` and ``lookaside`` stores.
# They are never read from a registry listing; their single layer is a Referee attestation document.
GRAFEAS_ATTESTATION = "application/vnd.dev.referee.grafeas-attestation.v1"
LOOKASIDE_SIGNATURE = "application/vnd.dev.referee.lookaside-signature.v1"
ATTESTED_EVIDENCE_TYPES = frozenset({GRAFEAS_ATTESTATION, LOOKASIDE_SIGNATURE})
# Types only Referee's own stores may present; a listing (index, referrers API) claiming one is dropped.
INTERNAL_TYPES = frozenset(COSIGN_LEGACY_TYPES) | ATTESTED_EVIDENCE_TYPES
REFEREE_ATTESTATION_DOCUMENT = "application/vnd.dev.referee.attestation.v1+json"
ANNOTATION_ATTESTATION_SEAL = "dev.referee.attestation/seal"
ANNOTATION_GRAFEAS_OCCURRENCE = "dev.referee.grafeas/occurrence"
ANNOTATION_GRAFEAS_NOTE = "dev.referee.grafeas/note"
ANNOTATION_LOOKASIDE_LOCATION = "dev.referee.lookaside/location"
SIMPLE_SIGNING_ATOMIC_TYPE = "atomic container signature"
SIMPLE_SIGNING_BINAUTHZ_TYPE = "Google cloud binauthz container signature"
GCR_IMAGE_URL_CONTENT_TYPE = "application/vnd.gcr.image.url.v1"
