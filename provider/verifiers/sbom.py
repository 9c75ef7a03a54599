"""The ``sbom`` verifier: SPDX 2.x JSON and CycloneDX 1.4-1.6 JSON referrers, judged by the SBOM rules.

The verifier judges content: a document that does not parse or is not an SBOM fails with its reason;
otherwise disallowed licences and packages (:mod:`provider.metadata.sbom`) decide. Whether an SBOM must be
present at all is the policy's business (a rule requiring a successful ``sbom`` result). An SBOM wrapped in an
unsigned in-toto Statement must name the image among its subjects.

Also home of :func:`load_document`, the artifact-to-JSON step every metadata verifier shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError
from provider.metadata.common import MetadataError, decode_json, iso
from provider.metadata.sbom import (
    CYCLONEDX,
    SPDX,
    PackageRule,
    SbomPolicy,
    evaluate_sbom,
    parse_package_rule,
    parse_sbom,
)
from provider.oci import Descriptor, Manifest
from provider.verifiers.base import VerificationRequest, VerifierResult, VerifierSpec, verifier_types

MAX_LISTED = 50
_THREAD_THRESHOLD = 256 * 1024


def pick_layer(manifest: Manifest, preferred: Collection[str]) -> Descriptor:
    """The layer holding the document: one of type ``preferred``, else the only layer, else the only JSON one."""
    if manifest.is_index:
        raise MetadataError("the artifact is an index, not a document")
    layers = manifest.layers
    if not layers:
        raise MetadataError("the artifact has no layers")
    for layer in layers:
        if layer.media_type in preferred:
            return layer
    if len(layers) == 1:
        return layers[0]
    json_layers = [layer for layer in layers if layer.media_type.endswith("json")]
    if len(json_layers) == 1:
        return json_layers[0]
    raise MetadataError(f"cannot tell which of {len(layers)} layers holds the document")


async def load_document(
    request: VerificationRequest, manifest: Manifest, preferred: Collection[str], what: str
) -> tuple[Any, Descriptor]:
    """Fetch (digest-verified, size-limited) and decode the JSON document of an artifact.

    Raises :class:`MetadataError` for content problems (too large, not JSON, no document layer); registry faults
    propagate."""
    layer = pick_layer(manifest, preferred)
    try:
        data = await request.content.fetch_blob(layer)
    except ArtifactTooLargeError as exc:
        raise MetadataError(f"{what} is too large: {exc.message}") from None
    except (DigestMismatchError, ManifestInvalidError) as exc:
        raise MetadataError(f"{what} could not be read: {exc.message}") from None
    if len(data) > _THREAD_THRESHOLD:
        return await asyncio.to_thread(decode_json, data, what), layer
    return decode_json(data, what), layer


def format_hint(artifact_type: str | None) -> str | None:
    """``spdx`` / ``cyclonedx`` from an artifact or media type, when it says."""
    lowered = (artifact_type or "").lower()
    if "spdx" in lowered:
        return SPDX
    if "cyclonedx" in lowered:
        return CYCLONEDX
    return None


def parse_package_rules(node: Node, name: str) -> tuple[PackageRule, ...]:
    """``disallowedPackages`` entries, each problem reported at its path."""

    def one(value: object, path: str) -> PackageRule | None:
        try:
            return parse_package_rule(value)
        except MetadataError as exc:
            node.problems.add(path, str(exc))
            return None

    return node.parse_each(name, one)


@dataclass(frozen=True, slots=True)
class SbomParams:
    policy: SbomPolicy


class SbomVerifier:
    type = "sbom"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.artifact_types = spec.artifact_types
        self.params: SbomParams = spec.params

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        hint = format_hint(request.artifact.artifact_type)
        try:
            raw, layer = await load_document(request, request.manifest, self.artifact_types, "the SBOM")
            if layer.size > _THREAD_THRESHOLD:
                document = await asyncio.to_thread(parse_sbom, raw, hint or format_hint(layer.media_type))
            else:
                document = parse_sbom(raw, hint or format_hint(layer.media_type))
        except MetadataError as exc:
            return VerifierResult(False, str(exc), {"format": hint, "error": str(exc)})
        details: dict[str, Any] = {
            "format": document.format,
            "specVersion": document.spec_version,
            "name": document.name,
            "created": iso(document.created),
            "documentDigest": layer.digest,
            "packageCount": len(document.packages),
            "warnings": list(document.warnings[:MAX_LISTED]),
        }
        digest = request.subject.descriptor.digest
        if document.subjects and digest not in document.subjects:
            reason = f"the SBOM statement is about {', '.join(document.subjects[:3])}, not {digest}"
            return VerifierResult(False, reason, {**details, "findings": [], "findingCount": 0})
        evaluation = evaluate_sbom(document, self.params.policy)
        details["findings"] = [f.to_json() for f in evaluation.findings[:MAX_LISTED]]
        details["findingCount"] = len(evaluation.findings)
        label = f"{document.format} {document.spec_version} SBOM ({len(document.packages)} packages)"
        if not evaluation.passed:
            return VerifierResult(False, f"{label}: {evaluation.summary()}", details)
        return VerifierResult(True, f"{label}: no disallowed licenses or packages", details)


@verifier_types.register("sbom")
class SbomPlugin:
    default_artifact_types = frozenset({mt.SPDX_JSON, mt.CYCLONEDX_JSON})

    def parse_params(self, node: Node) -> SbomParams:
        licenses = node.str_list("disallowed_licenses")
        packages = parse_package_rules(node, "disallowed_packages")
        return SbomParams(SbomPolicy(SbomPolicy.of(licenses).disallowed_licenses, packages))

    def create(self, spec: VerifierSpec) -> SbomVerifier:
        return SbomVerifier(spec)
