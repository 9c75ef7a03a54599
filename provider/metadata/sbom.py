"""SBOMs: tolerant readers for SPDX 2.x JSON and CycloneDX 1.4-1.6 JSON, and the SBOM rules.

Reading is deliberately not full schema validation (real Syft output fails spdx-tools' validation on absolute
file names): the fields the rules need are read leniently, and a few structural checks decide whether the
document is an SBOM at all. Errors (the document is rejected): not a JSON object; SPDX without
``spdxVersion`` ``SPDX-2.x`` or without ``SPDXID`` ``SPDXRef-DOCUMENT``; CycloneDX without ``bomFormat``
``CycloneDX`` or with a ``specVersion`` other than 1.4, 1.5 or 1.6; ``packages``/``components`` not a list;
a package or component without a ``name``. Everything else missing is a warning.

Rules (:class:`SbomPolicy`): disallowed licences (:mod:`provider.metadata.licenses`) over every licence a
package declares (SPDX ``licenseConcluded`` and ``licenseDeclared``, CycloneDX ``licenses[]``); disallowed
packages by name or purl with an optional version range (:mod:`provider.metadata.versions`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provider.metadata.common import MetadataError, items, mapping, parse_rfc3339, text, unwrap_statement
from provider.metadata.licenses import LicenseDenyList, LicenseExpression, license_name, parse_license_expression
from provider.metadata.purl import PackageURL, parse_purl, purl_matches, versions_equal
from provider.metadata.versions import VersionRange, parse_range, same_version

SPDX = "spdx"
CYCLONEDX = "cyclonedx"
CYCLONEDX_VERSIONS = ("1.4", "1.5", "1.6")
SBOM_PREDICATE_PREFIXES = ("https://spdx.dev/Document", "https://cyclonedx.org/bom")
_SPDX2 = re.compile(r"^SPDX-2\.\d+$")
_MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class PackageLicense:
    """One licence statement of a package and the field it came from."""

    expression: LicenseExpression
    source: str


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: str | None
    purl: str | None
    licenses: tuple[PackageLicense, ...] = ()
    ref: str | None = None

    @property
    def parsed_purl(self) -> PackageURL | None:
        return parse_purl(self.purl)

    def label(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass(frozen=True, slots=True)
class SbomDocument:
    """What Referee read from an SBOM. ``license_ref_names`` maps case-folded ``LicenseRef-*`` to names."""

    format: str
    spec_version: str
    name: str | None
    created: datetime | None
    packages: tuple[Package, ...]
    license_ref_names: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()


def parse_sbom(document: object, hint: str | None = None) -> SbomDocument:
    """Read an SPDX 2.x or CycloneDX JSON document (or an in-toto Statement carrying one).

    ``hint`` (``"spdx"`` or ``"cyclonedx"``, e.g. from the artifact type) picks the format when the document
    does not say. Raises :class:`MetadataError` with the reason when it is not a valid SBOM."""
    predicate, subjects = unwrap_statement(document, SBOM_PREDICATE_PREFIXES)
    if not isinstance(predicate, Mapping):
        raise MetadataError("not a valid SBOM: the document is not a JSON object")
    if "bomFormat" in predicate or (hint == CYCLONEDX and "spdxVersion" not in predicate):
        doc = _parse_cyclonedx(predicate)
    elif "spdxVersion" in predicate or "SPDXID" in predicate or hint == SPDX:
        doc = _parse_spdx(predicate)
    elif "@context" in predicate and "spdx" in str(predicate.get("@context")).lower():
        raise MetadataError("not a valid SPDX document: SPDX 3 JSON-LD is not supported (SPDX 2.x JSON is)")
    else:
        raise MetadataError("not a valid SBOM: neither SPDX 2.x JSON (spdxVersion) nor CycloneDX JSON (bomFormat)")
    if subjects:
        doc = dataclasses.replace(doc, subjects=subjects)
    return doc


def _parse_spdx(doc: Mapping[str, Any]) -> SbomDocument:
    version = doc.get("spdxVersion")
    if version is None:
        raise MetadataError("not a valid SPDX document: spdxVersion is missing")
    if not isinstance(version, str) or not _SPDX2.match(version.strip()):
        raise MetadataError(f"not a valid SPDX document: spdxVersion {version!r} is not SPDX-2.x")
    if doc.get("SPDXID") != "SPDXRef-DOCUMENT":
        raise MetadataError(f"not a valid SPDX document: SPDXID is {doc.get('SPDXID')!r}, not 'SPDXRef-DOCUMENT'")
    warnings: list[str] = []
    for key in ("name", "documentNamespace"):
        if text(doc.get(key)) is None:
            warnings.append(f"{key} is missing")
    if doc.get("dataLicense") != "CC0-1.0":
        warnings.append(f"dataLicense is {doc.get('dataLicense')!r}, not 'CC0-1.0'")
    creation = mapping(doc.get("creationInfo"))
    created = parse_rfc3339(creation.get("created"))
    if created is None:
        warnings.append("creationInfo.created is missing or not an RFC 3339 date-time")
    if not items(creation.get("creators")):
        warnings.append("creationInfo.creators is missing")
    raw_packages = doc.get("packages", [])
    if not isinstance(raw_packages, list):
        raise MetadataError("not a valid SPDX document: packages is not a list")
    ref_names: dict[str, str] = {}
    for info in items(doc.get("hasExtractedLicensingInfos")):
        license_id, name = text(mapping(info).get("licenseId")), text(mapping(info).get("name"))
        if license_id and name:
            ref_names[license_id.casefold()] = name
    packages: list[Package] = []
    for i, raw in enumerate(raw_packages):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
            raise MetadataError(f"not a valid SPDX document: packages[{i}] has no name")
        if text(raw.get("SPDXID")) is None:
            warnings.append(f"packages[{i}] has no SPDXID")
        licenses = [
            PackageLicense(parse_license_expression(value), key)
            for key in ("licenseConcluded", "licenseDeclared")
            if (value := text(raw.get(key))) is not None
        ]
        purl = next(
            (
                text(mapping(ref).get("referenceLocator"))
                for ref in items(raw.get("externalRefs"))
                if str(mapping(ref).get("referenceType", "")).lower() == "purl"
                and text(mapping(ref).get("referenceLocator"))
            ),
            None,
        )
        packages.append(
            Package(raw["name"].strip(), text(raw.get("versionInfo")), purl, tuple(licenses), text(raw.get("SPDXID")))
        )
    return SbomDocument(
        SPDX, version.strip(), text(doc.get("name")), created, tuple(packages), ref_names, tuple(warnings)
    )


def _parse_cyclonedx(doc: Mapping[str, Any]) -> SbomDocument:
    if doc.get("bomFormat") != "CycloneDX":
        raise MetadataError(f"not a valid CycloneDX document: bomFormat is {doc.get('bomFormat')!r}")
    version = doc.get("specVersion")
    if not isinstance(version, str) or version.strip() not in CYCLONEDX_VERSIONS:
        raise MetadataError(
            f"not a valid CycloneDX document: specVersion {version!r} is not one of {', '.join(CYCLONEDX_VERSIONS)}"
        )
    bom_version = doc.get("version", 1)
    if not isinstance(bom_version, int) or isinstance(bom_version, bool) or bom_version < 1:
        raise MetadataError(f"not a valid CycloneDX document: version {bom_version!r} is not a positive integer")
    warnings: list[str] = []
    metadata = mapping(doc.get("metadata"))
    created = parse_rfc3339(metadata.get("timestamp"))
    if "timestamp" in metadata and created is None:
        warnings.append("metadata.timestamp is not an RFC 3339 date-time")
    packages: list[Package] = []
    _components(doc.get("components", []), "components", packages, warnings, 0)
    name = text(mapping(metadata.get("component")).get("name"))
    return SbomDocument(CYCLONEDX, version.strip(), name, created, tuple(packages), {}, tuple(warnings))


def _components(raw: object, path: str, out: list[Package], warnings: list[str], depth: int) -> None:
    if not isinstance(raw, list):
        raise MetadataError(f"not a valid CycloneDX document: {path} is not a list")
    if depth > _MAX_DEPTH:
        raise MetadataError(f"not a valid CycloneDX document: components nested deeper than {_MAX_DEPTH}")
    for i, component in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(component, Mapping) or text(component.get("name")) is None:
            raise MetadataError(f"not a valid CycloneDX document: {where} has no name")
        if text(component.get("type")) is None:
            warnings.append(f"{where} has no type")
        licenses: list[PackageLicense] = []
        for j, choice in enumerate(items(component.get("licenses"))):
            entry = mapping(choice)
            lic = mapping(entry.get("license"))
            if (expression := text(entry.get("expression"))) is not None:
                licenses.append(PackageLicense(parse_license_expression(expression), "expression"))
            elif (license_id := text(lic.get("id"))) is not None:
                licenses.append(PackageLicense(parse_license_expression(license_id), "license.id"))
            elif (name := text(lic.get("name"))) is not None:
                licenses.append(PackageLicense(license_name(name), "license.name"))
            else:
                warnings.append(f"{where}.licenses[{j}] names no licence")
        out.append(
            Package(
                str(component["name"]).strip(),
                text(component.get("version")),
                text(component.get("purl")),
                tuple(licenses),
                text(component.get("bom-ref")),
            )
        )
        if "components" in component:
            _components(component["components"], f"{where}.components", out, warnings, depth + 1)


# -- rules ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackageRule:
    """A disallowed package: by ``purl`` (type/namespace/name, qualifiers when given) or by ``name``, with an
    optional version range; a purl's own version, when no range is given, is an exact version."""

    text: str
    name: str | None = None
    purl: PackageURL | None = None
    versions: VersionRange | None = None

    def matches(self, package: Package) -> bool:
        """Versions are compared by the rules of the package's purl type (else the rule's, for a package matched
        by name), see :mod:`provider.metadata.versions`."""
        candidate = package.parsed_purl
        version = (candidate.version if candidate else None) or package.version
        scheme = candidate.type if candidate else (self.purl.type if self.purl else None)
        if self.purl is not None:
            exact = self.purl.version if self.versions is None else None
            if candidate is not None:
                if not purl_matches(self.purl, candidate, compare_version=False):
                    return False
                # The candidate's version: its purl's, else the package's own (an SBOM may omit it from the purl).
                if exact is not None and version is not None and not _same(exact, version, scheme):
                    return False
            else:
                if package.name.casefold() != self.purl.name.casefold():
                    return False
                if exact is not None and (package.version is None or not _same(exact, package.version, scheme)):
                    return False
        else:
            names = {package.name.casefold()} | ({candidate.name.casefold()} if candidate else set())
            if (self.name or "").casefold() not in names:
                return False
        return self.versions is None or self.versions.contains(version, scheme)


def _same(a: str, b: str, scheme: str | None) -> bool:
    return versions_equal(a, b) or same_version(a, b, scheme)


def parse_package_rule(entry: object) -> PackageRule:
    """``"name"``, ``"name@<range>"``, ``"pkg:type/ns/name[@version]"`` or ``{name | purl, versions}``."""
    if isinstance(entry, str):
        raw = entry.strip()
        if raw.lower().startswith("pkg:"):
            purl = parse_purl(raw)
            if purl is None:
                raise MetadataError(f"invalid package URL {raw!r}")
            return PackageRule(raw, purl=purl)
        head, sep, tail = raw.rpartition("@")
        if sep and head:
            return PackageRule(raw, name=head.strip(), versions=parse_range(tail))
        if not raw:
            raise MetadataError("empty package entry")
        return PackageRule(raw, name=raw)
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"name", "purl", "versions"}
        if unknown:
            raise MetadataError(f"unknown keys {', '.join(sorted(map(str, unknown)))} (use name, purl, versions)")
        name, purl_text, versions = text(entry.get("name")), text(entry.get("purl")), entry.get("versions")
        if (name is None) == (purl_text is None):
            raise MetadataError("give exactly one of name or purl")
        purl = parse_purl(purl_text) if purl_text else None
        if purl_text and purl is None:
            raise MetadataError(f"invalid package URL {purl_text!r}")
        if versions is not None and not isinstance(versions, str):
            raise MetadataError("versions must be a string such as '>=1.0,<1.4'")
        version_range = parse_range(versions, purl.type if purl else None) if isinstance(versions, str) else None
        label = (purl_text or name or "") + (f" {versions}" if versions else "")
        return PackageRule(label, name=name, purl=purl, versions=version_range)
    raise MetadataError("expected a package name, a package URL or a mapping")


@dataclass(frozen=True, slots=True)
class SbomPolicy:
    disallowed_licenses: LicenseDenyList = field(default_factory=lambda: LicenseDenyList.of(()))
    disallowed_packages: tuple[PackageRule, ...] = ()

    @classmethod
    def of(cls, licenses: Iterable[str] = (), packages: Iterable[object] = ()) -> SbomPolicy:
        """Build from plain values (raises :class:`MetadataError` on an invalid package entry)."""
        return cls(LicenseDenyList.of(licenses), tuple(parse_package_rule(p) for p in packages))


@dataclass(frozen=True, slots=True)
class SbomFinding:
    rule: str
    package: str
    version: str | None
    purl: str | None
    detail: str
    terms: tuple[str, ...] = ()
    malformed: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "package": self.package, "detail": self.detail}
        if self.version:
            out["version"] = self.version
        if self.purl:
            out["purl"] = self.purl
        if self.terms:
            out["deniedTerms"] = list(self.terms)
        if self.malformed:
            out["malformedExpression"] = True
        return out


@dataclass(frozen=True, slots=True)
class SbomEvaluation:
    document: SbomDocument
    findings: tuple[SbomFinding, ...]

    @property
    def passed(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        if not self.findings:
            return f"{self.document.format} {self.document.spec_version} SBOM, {len(self.document.packages)} packages"
        first = self.findings[0]
        more = f" (+{len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
        return f"{first.detail}{more}"


def evaluate_sbom(document: SbomDocument, policy: SbomPolicy) -> SbomEvaluation:
    """Judge every package of ``document`` against ``policy``; findings are in document order."""
    findings: list[SbomFinding] = []
    for package in document.packages:
        for lic in package.licenses:
            denied, terms = policy.disallowed_licenses.judge(lic.expression, document.license_ref_names)
            if denied:
                findings.append(
                    SbomFinding(
                        "disallowed-license",
                        package.name,
                        package.version,
                        package.purl,
                        f"package {package.label()} has disallowed license {', '.join(terms)}"
                        f" ({lic.source}: {lic.expression.text})",
                        terms,
                        lic.expression.malformed,
                    )
                )
                break
        for rule in policy.disallowed_packages:
            if rule.matches(package):
                findings.append(
                    SbomFinding(
                        "disallowed-package",
                        package.name,
                        package.version,
                        package.purl,
                        f"package {package.label()} is disallowed ({rule.text})",
                    )
                )
                break
    return SbomEvaluation(document, tuple(findings))
