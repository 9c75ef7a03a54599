"""OpenVEX (v0.2.0, and v0.0.1's string forms) documents and the suppression of findings by VEX statements.

A statement *applies* to a finding of image ``D`` when

* one of its products is ``D``: a purl pinning the digest (``pkg:oci/app@sha256%3A<hex>?repository_url=…``, any
  purl type), an ``@id`` ending in ``@sha256:<hex>`` or equal to the digest, or ``hashes`` with the same value
  (``sha-256``/``sha256``, ``sha-512``); a product named without a digest never matches (a name or tag does not
  identify content). Statements without products inherit the encapsulating document's subjects (in-toto);
* its vulnerability ``name`` or one of its ``aliases`` equals the finding's id or one of the finding's aliases
  (case-insensitive; CVE ↔ GHSA through aliases);
* it names no subcomponents (neither on the matching product nor, v0.0.1, on the statement), or one of them is
  the finding's package (purl type/namespace/name, and version when the subcomponent gives one; a finding
  known only by package name matches a subcomponent purl of that name).

Statements form a time-ordered sequence: of the statements applying to a finding the newest decides (the
statement's ``timestamp``, else the document's; a later ``last_updated`` counts). On equal times a statement that
does not suppress wins. A statement without any timestamp cannot be ordered and is ignored. The deciding
statement suppresses the finding only when its status is ``fixed``, or ``not_affected`` with a known
``justification`` or an ``impact_statement``; ``affected`` and ``under_investigation`` never suppress.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provider.metadata.common import MetadataError, items, mapping, parse_rfc3339, text, unwrap_statement
from provider.metadata.purl import digest_of, parse_purl, versions_equal
from provider.metadata.sarif import Finding, canonical_id

STATUSES = ("not_affected", "affected", "fixed", "under_investigation")
JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)
OPENVEX_CONTEXT = "https://openvex.dev/ns"
VEX_PREDICATE_PREFIXES = (OPENVEX_CONTEXT,)
_HASH_ALGS = {"sha-256": "sha256", "sha256": "sha256", "sha-512": "sha512", "sha512": "sha512"}
_REF_DIGEST = re.compile(r"(?:^|@)(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$", re.IGNORECASE)
MAX_STATEMENTS = 10_000


@dataclass(frozen=True, slots=True)
class VexComponent:
    """A product or subcomponent: its ``@id``, ``identifiers.purl`` and ``hashes`` (algorithm → hex)."""

    id: str | None
    purl: str | None = None
    hashes: Mapping[str, str] | None = None
    subcomponents: tuple[VexComponent, ...] = ()

    def label(self) -> str:
        return self.id or self.purl or ",".join(f"{k}:{v}" for k, v in (self.hashes or {}).items()) or "?"


@dataclass(frozen=True, slots=True)
class VexStatement:
    index: int
    vulnerability: str
    aliases: tuple[str, ...]
    products: tuple[VexComponent, ...]
    subcomponents: tuple[VexComponent, ...]
    status: str
    justification: str | None
    impact_statement: str | None
    action_statement: str | None
    timestamp: datetime | None
    problems: tuple[str, ...] = ()

    def ids(self) -> frozenset[str]:
        return frozenset(canonical_id(i).casefold() for i in (self.vulnerability, *self.aliases) if i)

    @property
    def suppresses(self) -> bool:
        """``fixed``, or ``not_affected`` with a known justification or an impact statement."""
        if self.status == "fixed":
            return True
        return self.status == "not_affected" and (
            self.justification in JUSTIFICATIONS or self.impact_statement is not None
        )


@dataclass(frozen=True, slots=True)
class VexDocument:
    id: str | None
    author: str | None
    timestamp: datetime | None
    version: int | None
    context: str
    statements: tuple[VexStatement, ...]
    problems: tuple[str, ...] = ()
    source: str | None = None

    def statement_problems(self) -> list[str]:
        return [f"statements[{s.index}]: {p}" for s in self.statements for p in s.problems]


def _component(raw: object) -> VexComponent | None:
    if isinstance(raw, str):
        value = raw.strip()
        return VexComponent(value, value if value.lower().startswith("pkg:") else None) if value else None
    obj = mapping(raw)
    if not obj:
        return None
    ident = text(obj.get("@id"))
    purl = text(mapping(obj.get("identifiers")).get("purl"))
    if purl is None and ident and ident.lower().startswith("pkg:"):
        purl = ident
    hashes = {str(k).lower(): str(v).lower() for k, v in mapping(obj.get("hashes")).items() if isinstance(v, str)}
    subs = tuple(c for c in (_component(s) for s in items(obj.get("subcomponents"))) if c is not None)
    if ident is None and purl is None and not hashes:
        return None
    return VexComponent(ident, purl, hashes or None, subs)


def parse_openvex(document: object, source: str | None = None, inherited_products: Sequence[str] = ()) -> VexDocument:
    """Read an OpenVEX document (or an in-toto Statement with an ``https://openvex.dev/ns`` predicate, whose
    subjects become the products of statements that name none). ``inherited_products`` are digests that
    statements without products inherit from another encapsulating document.

    Raises :class:`MetadataError` when the document is not OpenVEX at all; problems that make single
    statements unusable are listed in ``problems`` (document) and ``VexStatement.problems``."""
    predicate, subjects = unwrap_statement(document, VEX_PREDICATE_PREFIXES)
    doc = mapping(predicate)
    context = text(doc.get("@context"))
    if not doc or context is None or not context.startswith(OPENVEX_CONTEXT):
        raise MetadataError(f"not an OpenVEX document: @context is {doc.get('@context')!r}")
    raw_statements = doc.get("statements")
    if not isinstance(raw_statements, list):
        raise MetadataError("not an OpenVEX document: statements is not a list")
    if len(raw_statements) > MAX_STATEMENTS:
        raise MetadataError(f"OpenVEX document has more than {MAX_STATEMENTS} statements")
    problems: list[str] = []
    for key in ("@id", "author"):
        if text(doc.get(key)) is None:
            problems.append(f"{key} is missing")
    doc_time = parse_rfc3339(doc.get("timestamp"))
    if doc_time is None:
        problems.append("timestamp is missing or not an RFC 3339 date-time")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        problems.append("version is missing or not an integer")
        version = None
    inherited = tuple(VexComponent(d) for d in (*subjects, *inherited_products))
    statements = [_statement(i, raw, doc_time, inherited) for i, raw in enumerate(raw_statements)]
    return VexDocument(
        text(doc.get("@id")),
        text(doc.get("author")),
        doc_time,
        version,
        context,
        tuple(statements),
        tuple(problems),
        source,
    )


def _statement(index: int, raw: object, doc_time: datetime | None, inherited: tuple[VexComponent, ...]) -> VexStatement:
    obj = mapping(raw)
    problems: list[str] = []
    vuln = obj.get("vulnerability")
    aliases: tuple[str, ...] = ()
    if isinstance(vuln, str):
        name = text(vuln)
    else:
        name = text(mapping(vuln).get("name"))
        aliases = tuple(a.strip() for a in items(mapping(vuln).get("aliases")) if isinstance(a, str) and a.strip())
    if name is None:
        problems.append("vulnerability name is missing")
    products = tuple(c for c in (_component(p) for p in items(obj.get("products"))) if c is not None) or inherited
    if not products:
        problems.append("names no product")
    subcomponents = tuple(c for c in (_component(s) for s in items(obj.get("subcomponents"))) if c is not None)
    status = text(obj.get("status")) or ""
    if status not in STATUSES:
        problems.append(f"status {obj.get('status')!r} is not one of {', '.join(STATUSES)}")
    justification = text(obj.get("justification"))
    impact = text(obj.get("impact_statement"))
    action = text(obj.get("action_statement"))
    if justification is not None and justification not in JUSTIFICATIONS:
        problems.append(f"justification {justification!r} is not a VEX justification label")
    if status == "not_affected" and justification not in JUSTIFICATIONS and impact is None:
        problems.append("not_affected without a justification or impact_statement")
    if status == "affected" and action is None:
        problems.append("affected without an action_statement")
    own_time = parse_rfc3339(obj.get("timestamp"))
    if obj.get("timestamp") is not None and own_time is None:
        problems.append("timestamp is not an RFC 3339 date-time")
    moment = own_time or doc_time
    updated = parse_rfc3339(obj.get("last_updated"))
    if updated is not None and (moment is None or updated > moment):
        moment = updated
    if moment is None:
        problems.append("has no timestamp (neither its own nor the document's)")
    return VexStatement(
        index, name or "", aliases, products, subcomponents, status, justification, impact, action, moment,
        tuple(problems),
    )  # fmt: skip


def _matches_digest(component: VexComponent, digest: str) -> bool:
    want = digest.lower()
    alg, _, hex_value = want.partition(":")
    for candidate in (component.id, component.purl):
        if not candidate:
            continue
        purl = parse_purl(candidate)
        if purl is not None and digest_of(purl) == want:
            return True
        m = _REF_DIGEST.search(candidate.strip())
        if m and m.group(1).lower() == want:
            return True
    return any(_HASH_ALGS.get(k) == alg and v == hex_value for k, v in (component.hashes or {}).items())


def _matches_package(component: VexComponent, finding: Finding) -> bool:
    target = parse_purl(component.purl or component.id)
    found = parse_purl(finding.purl)
    if target is not None and found is not None:
        if target.key() != found.key():
            return False
        return target.version is None or versions_equal(target.version, found.version or finding.version)
    if target is not None and finding.package:
        if target.name.casefold() != finding.package.casefold():
            return False
        return target.version is None or versions_equal(target.version, finding.version)
    label = (component.id or "").casefold()
    if not label or not finding.package:
        return False
    package = finding.package.casefold()
    return label == package or (finding.version is not None and label == f"{package}@{finding.version.casefold()}")


def names_product(statement: VexStatement, digest: str) -> bool:
    """Whether one of the statement's products is the image ``digest``."""
    return any(_matches_digest(p, digest) for p in statement.products)


def statement_applies(statement: VexStatement, finding: Finding, digest: str) -> VexComponent | None:
    """The product through which ``statement`` applies to ``finding`` of image ``digest``, else None."""
    if statement.timestamp is None or not statement.vulnerability:
        return None
    if not statement.ids() & finding.ids():
        return None
    for product in statement.products:
        if not _matches_digest(product, digest):
            continue
        subs = product.subcomponents or statement.subcomponents
        if not subs or any(_matches_package(s, finding) for s in subs):
            return product
    return None


@dataclass(frozen=True, slots=True)
class VexDecision:
    """The statement that decides a finding, and whether it suppresses it."""

    statement: VexStatement
    document: VexDocument
    product: VexComponent

    @property
    def suppressed(self) -> bool:
        return self.statement.suppresses

    def to_json(self) -> dict[str, Any]:
        s = self.statement
        out: dict[str, Any] = {
            "vexSource": self.document.source,
            "vexDocument": self.document.id,
            "statement": s.index,
            "vulnerability": s.vulnerability,
            "status": s.status,
            "product": self.product.label(),
            "timestamp": s.timestamp.isoformat().replace("+00:00", "Z") if s.timestamp else None,
        }
        if s.justification:
            out["justification"] = s.justification
        if s.impact_statement:
            out["impactStatement"] = s.impact_statement[:200]
        return out


class VexIndex:
    """The statements of several documents, judged for one image digest."""

    def __init__(self, documents: Iterable[VexDocument], digest: str) -> None:
        self.documents = tuple(documents)
        self.digest = digest

    def decide(self, finding: Finding) -> VexDecision | None:
        """The newest applicable statement (ties: a non-suppressing one), or None when none applies."""
        best: tuple[tuple[datetime, int], VexDecision] | None = None
        for document in self.documents:
            for statement in document.statements:
                product = statement_applies(statement, finding, self.digest)
                if product is None:
                    continue
                assert statement.timestamp is not None
                key = (statement.timestamp, 0 if statement.suppresses else 1)
                if best is None or key > best[0]:
                    best = (key, VexDecision(statement, document, product))
        return best[1] if best else None
