"""The ``notation`` verifier: Notary Project signatures (JWS and COSE envelopes), as strict as notation-go.

One call judges one signature manifest (the executor calls once per referrer), found by its artifact type
``application/vnd.cncf.notary.signature`` in either manifest shape: OCI 1.1 (``artifactType`` with an empty
config) or OCI 1.0 (``config.mediaType``). The manifest must hold exactly one layer, whose media type selects
the envelope. See ``docs/notation.md`` for the configuration and what each check means.
"""

from __future__ import annotations

from typing import Any

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, DigestMismatchError
from provider.oci import Descriptor
from provider.verifiers.base import VerificationRequest, VerifierResult, VerifierSpec, verifier_types
from provider.verifiers.notation.config import NotationParams, parse_params
from provider.verifiers.notation.envelope import CheckFailure
from provider.verifiers.notation.revocation import RevocationChecker
from provider.verifiers.notation.verify import verify_signature

__all__ = ["NotationParams", "NotationPlugin", "NotationVerifier"]


class NotationVerifier:
    type = "notation"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.artifact_types = spec.artifact_types
        self.params: NotationParams = spec.params
        self.revocation = RevocationChecker(self.params.revocation)

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        manifest = request.manifest
        details: dict[str, Any] = {"signatureManifest": request.artifact.digest}
        position = self._position(request)
        if position >= self.params.max_signatures:
            return VerifierResult(
                False,
                f"not examined: only the first {self.params.max_signatures} notation signatures are verified",
                details,
            )
        problem = self._manifest_problem(request)
        layer = manifest.layers[0] if len(manifest.layers) == 1 else None
        media_type = layer.media_type if layer is not None else ""

        async def load() -> bytes:
            assert layer is not None
            try:
                return await request.content.fetch_blob(layer, self.params.max_envelope_bytes)
            except ArtifactTooLargeError:
                raise CheckFailure(
                    f"signature envelope is larger than {self.params.max_envelope_bytes} bytes"
                ) from None
            except DigestMismatchError as exc:
                raise CheckFailure(f"signature envelope does not match its digest: {exc.message}") from None

        return await verify_signature(
            self.params,
            self.revocation,
            repository=request.subject.ref.name,
            target=request.subject.descriptor,
            now=request.now,
            media_type=media_type,
            load=load,
            manifest_problem=problem,
            details=details,
        )

    def _position(self, request: VerificationRequest) -> int:
        mine = [d.digest for d in request.referrers if d.artifact_type in self.artifact_types]
        return mine.index(request.artifact.digest) if request.artifact.digest in mine else 0

    @staticmethod
    def _manifest_problem(request: VerificationRequest) -> str | None:
        manifest = request.manifest
        if manifest.is_index:
            return "signature manifest is an index, not an image manifest"
        if manifest.effective_artifact_type != mt.NOTARY_SIGNATURE:
            return f"manifest artifact type {manifest.effective_artifact_type!r} is not {mt.NOTARY_SIGNATURE}"
        if manifest.subject is not None and manifest.subject.digest != request.subject.descriptor.digest:
            return f"signature manifest's subject is {manifest.subject.digest}, not {request.subject.descriptor.digest}"
        if len(manifest.layers) != 1:
            return f"signature manifest must have exactly one layer (the envelope), has {len(manifest.layers)}"
        return None


@verifier_types.register("notation")
class NotationPlugin:
    default_artifact_types = frozenset({mt.NOTARY_SIGNATURE})

    def parse_params(self, node: Node) -> NotationParams:
        return parse_params(node)

    def create(self, spec: VerifierSpec) -> NotationVerifier:
        return NotationVerifier(spec)
