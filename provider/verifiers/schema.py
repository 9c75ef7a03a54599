"""The ``schema`` verifier: validates any artifact's JSON document against a configured JSON Schema, offline.

``schema`` names one shipped with Referee (``provider/schemas/<name>.json``: ``sarif-2.1.0``,
``openvex-0.2.0``) and ``schemaFile`` gives a path; exactly one is required, and so is ``artifactTypes`` (the
verifier has no default types). ``$ref`` is resolved only inside the schema itself: the reference registry
refuses every other URI, so validation never touches the network. ``formats: true`` also checks ``format``
keywords (off by default, as in the JSON Schema specification).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from provider.confignode import Node
from provider.metadata.common import MetadataError
from provider.oci import Descriptor
from provider.verifiers.base import VerificationRequest, VerifierResult, VerifierSpec, verifier_types
from provider.verifiers.sbom import load_document

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from referencing import Resource

BUILTIN_SCHEMAS = ("sarif-2.1.0", "openvex-0.2.0")
_THREAD_THRESHOLD = 256 * 1024


class InvalidSchemaError(ValueError):
    """The configured schema is not a usable JSON Schema."""


def _refuse(uri: str) -> Resource:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


def builtin_schema(name: str) -> bytes:
    """The bytes of a schema shipped in ``provider/schemas``."""
    return (resources.files("provider") / "schemas" / f"{name}.json").read_bytes()


def build_validator(schema: object, *, formats: bool = False) -> Validator:
    """A validator for ``schema`` whose ``$ref`` resolution never leaves the schema (raises
    :class:`InvalidSchemaError`). ``jsonschema`` is imported here, so Referee starts without it unless a
    ``schema`` verifier is configured."""
    from jsonschema import Draft202012Validator, FormatChecker, validators
    from jsonschema.exceptions import SchemaError
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    if not isinstance(schema, dict):
        raise InvalidSchemaError("a schema must be a JSON object")
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchemaError(exc.message) from None
    resource = Resource.from_contents(schema, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]
    if resource.id():
        registry = registry.with_resource(resource.id() or "", resource)
    checker = FormatChecker() if formats else None
    return cls(schema, registry=registry, format_checker=checker)


def validation_errors(validator: Validator, document: Any, limit: int) -> list[str]:
    """Up to ``limit`` errors as ``path: message``; a reference outside the schema is an error too."""
    from referencing.exceptions import Unresolvable

    out: list[str] = []
    try:
        for error in validator.iter_errors(document):
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            out.append(f"{path}: {error.message[:200]}")
            if len(out) >= limit:
                break
    except Unresolvable as exc:
        out.append(f"the schema refers to {exc}, which is not available offline")
    return out


@dataclass(frozen=True, slots=True)
class SchemaParams:
    validator: Validator
    schema_name: str
    max_errors: int


class SchemaVerifier:
    type = "schema"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.artifact_types = spec.artifact_types
        self.params: SchemaParams = spec.params

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        try:
            raw, layer = await load_document(request, request.manifest, self.artifact_types, "the document")
        except MetadataError as exc:
            return VerifierResult(False, str(exc), {"schema": self.params.schema_name, "error": str(exc)})
        limit = self.params.max_errors
        if layer.size > _THREAD_THRESHOLD:
            errors = await asyncio.to_thread(validation_errors, self.params.validator, raw, limit)
        else:
            errors = validation_errors(self.params.validator, raw, limit)
        details = {"schema": self.params.schema_name, "documentDigest": layer.digest, "errors": errors}
        if errors:
            more = " (and more)" if len(errors) >= limit else ""
            return VerifierResult(False, f"does not match schema {self.params.schema_name}: {errors[0]}{more}", details)
        return VerifierResult(True, f"valid against schema {self.params.schema_name}", details)


@verifier_types.register("schema")
class SchemaPlugin:
    default_artifact_types: frozenset[str] = frozenset()

    def parse_params(self, node: Node) -> SchemaParams | None:
        if not node.has("artifact_types"):
            node.error("required (the schema verifier has no default artifact types)", "artifact_types")
        name = node.string("schema", None)
        path = node.string("schema_file", None)
        formats = node.flag("formats", False)
        max_errors = node.integer("max_errors", 10, minimum=1, maximum=100)
        if (name is None) == (path is None):
            node.error("give exactly one of schema (a shipped schema) or schemaFile", "schema")
            return None
        data: bytes | None
        if name is not None:
            if name not in BUILTIN_SCHEMAS:
                node.error(f"unknown schema {name!r}; shipped: {', '.join(BUILTIN_SCHEMAS)}", "schema")
                return None
            data, label = builtin_schema(name), name
        else:
            data = node.problems.read_file(path, node.child_path("schemaFile"))
            label = str(path)
            if data is None:
                return None
        try:
            validator = build_validator(json.loads(data), formats=formats)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            node.error(f"the schema is not JSON: {exc}", "schema_file" if path else "schema")
            return None
        except InvalidSchemaError as exc:
            node.error(f"not a valid JSON Schema: {exc}", "schema_file" if path else "schema")
            return None
        except ImportError:
            node.error("the schema verifier needs the jsonschema package", "schema")
            return None
        return SchemaParams(validator, label, max_errors or 10)

    def create(self, spec: VerifierSpec) -> SchemaVerifier:
        return SchemaVerifier(spec)
