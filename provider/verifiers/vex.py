"""The ``vex`` verifier: standalone validation of OpenVEX referrers (parseable, statements well-formed).

It does not suppress anything (the ``vulnerability-report`` verifier reads VEX documents as siblings); it gives
each VEX document a result of its own, so the document can carry nested signatures and appear in policy rules.
A document passes when it is OpenVEX, has its required fields (``@context``, ``@id``, ``author``, ``timestamp``,
``version``) and every statement is complete (vulnerability, product, status, ``justification`` or
``impact_statement`` for ``not_affected``, ``action_statement`` for ``affected``, a timestamp).
``requireSubjectProduct`` additionally requires at least one statement about the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from provider import mediatypes as mt
from provider.confignode import Node
from provider.metadata.common import MetadataError, iso
from provider.metadata.vex import names_product, parse_openvex
from provider.oci import Descriptor
from provider.verifiers.base import VerificationRequest, VerifierResult, VerifierSpec, verifier_types
from provider.verifiers.sbom import load_document

MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class VexParams:
    require_subject_product: bool


class VexVerifier:
    type = "vex"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.artifact_types = spec.artifact_types
        self.params: VexParams = spec.params

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        try:
            raw, layer = await load_document(request, request.manifest, self.artifact_types, "the VEX document")
            document = parse_openvex(raw, source=request.artifact.digest)
        except MetadataError as exc:
            return VerifierResult(False, str(exc), {"error": str(exc)})
        digest = request.subject.descriptor.digest
        about_subject = [s.index for s in document.statements if names_product(s, digest)]
        problems = [*document.problems, *document.statement_problems()]
        details = {
            "documentId": document.id,
            "author": document.author,
            "timestamp": iso(document.timestamp),
            "version": document.version,
            "documentDigest": layer.digest,
            "statementCount": len(document.statements),
            "statementsAboutSubject": about_subject[:MAX_LISTED],
            "problems": problems[:MAX_LISTED],
        }
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            return VerifierResult(False, f"invalid OpenVEX document: {problems[0]}{more}", details)
        if self.params.require_subject_product and not about_subject:
            return VerifierResult(False, f"no statement of the VEX document is about {digest}", details)
        return VerifierResult(True, f"OpenVEX document with {len(document.statements)} valid statements", details)


@verifier_types.register("vex")
class VexPlugin:
    default_artifact_types = frozenset({mt.OPENVEX_JSON, mt.OPENVEX_JSON_SHORT})

    def parse_params(self, node: Node) -> VexParams:
        return VexParams(require_subject_product=node.flag("require_subject_product", False))

    def create(self, spec: VerifierSpec) -> VexVerifier:
        return VexVerifier(spec)
