"""Fulcio certificates: loading, identities (SAN + OIDC issuer) and their configured rules, chains to a Fulcio CA
at a verified time."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from provider.confignode import Node, camel
from provider.verifiers.sigstore.common import Rejected, iso
from provider.verifiers.sigstore.trust import Authority, pem_certificates

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


def _der_utf8(value: bytes) -> str | None:
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if offset + length != len(value):
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _extension_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def certificate_identity(cert: x509.Certificate) -> tuple[tuple[str, ...], str | None]:
    """``(SAN emails, URIs and Sigstore other names, OIDC issuer)``; the issuer from extension ``…1.8`` (DER
    UTF8String), else the legacy ``…1.1`` (raw string)."""
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans.extend(san.get_values_for_type(x509.RFC822Name))
        sans.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == OID_OTHERNAME_SAN:
                sans.append(_der_utf8(other.value) or other.value.decode("utf-8", "replace"))
    except (x509.ExtensionNotFound, ValueError):
        pass
    issuer: str | None = None
    v2 = _extension_bytes(cert, OID_ISSUER_V2)
    if v2 is not None:
        issuer = _der_utf8(v2)
    if issuer is None:
        v1 = _extension_bytes(cert, OID_ISSUER_V1)
        if v1 is not None:
            issuer = v1.decode("utf-8", "replace")
    return tuple(sans), issuer


@dataclass(frozen=True, slots=True)
class IdentityRule:
    """One trusted keyless identity: SAN and OIDC issuer, each exact or a full-match regular expression."""

    identity: str | None
    identity_re: re.Pattern[str] | None
    issuer: str | None
    issuer_re: re.Pattern[str] | None
    scopes: tuple[str, ...] = ("*",)

    def matches(self, sans: Sequence[str], issuer: str | None) -> bool:
        """A certificate without an OIDC issuer extension (``issuer`` None, e.g. from a private PKI) matches only an
        ``issuerRegExp`` that fully matches the empty string, as cosign reads a missing issuer as ""."""
        if issuer is None:
            return self.issuer_re is not None and self.issuer_re.fullmatch("") is not None and self._names(sans)
        if self.issuer is not None and issuer != self.issuer:
            return False
        if self.issuer_re is not None and not self.issuer_re.fullmatch(issuer):
            return False
        return self._names(sans)

    def _names(self, sans: Sequence[str]) -> bool:
        if self.identity is not None:
            return self.identity in sans
        assert self.identity_re is not None
        return any(self.identity_re.fullmatch(s) for s in sans)

    def describe(self) -> str:
        who = (
            self.identity if self.identity is not None else f"/{self.identity_re.pattern if self.identity_re else ''}/"
        )
        by = self.issuer if self.issuer is not None else f"/{self.issuer_re.pattern if self.issuer_re else ''}/"
        return f"{who} from {by}"


def parse_identities(node: Node) -> tuple[IdentityRule, ...]:
    """``identities[]``: ``identity`` or ``identityRegExp``, ``issuer`` or ``issuerRegExp``, optional ``scopes``."""
    out: list[IdentityRule] = []
    for item in node.nodes("identities"):

        def pair(exact: str, pattern: str, item: Node = item) -> tuple[str | None, re.Pattern[str] | None, bool]:
            value = item.string(exact, None)
            regex_text = item.string(pattern, None)
            if (value is None) == (regex_text is None):
                item.error(f"give exactly one of {exact} or {camel(pattern)}", exact)
                return None, None, False
            if regex_text is None:
                return value, None, True
            try:
                return None, re.compile(regex_text), True
            except re.error as exc:
                item.error(f"invalid regular expression: {exc}", pattern)
                return None, None, False

        identity, identity_re, ok_identity = pair("identity", "identity_reg_exp")
        issuer, issuer_re, ok_issuer = pair("issuer", "issuer_reg_exp")
        scopes = item.str_list("scopes", ("*",))
        item.finish()
        if ok_identity and ok_issuer:
            out.append(IdentityRule(identity, identity_re, issuer, issuer_re, scopes))
    return tuple(out)


# -- certificates --------------------------------------------------------------------------------------------------


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise Rejected(f"{what} is not an X.509 certificate") from None


def load_pem_chain(data: str, what: str) -> tuple[x509.Certificate, ...]:
    certs = pem_certificates(data.encode())
    if not certs and data.strip():
        raise Rejected(f"{what} holds no PEM certificate")
    return certs


_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None)


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    authorities: Sequence[Authority],
    at: datetime,
    source: str,
    roots: str = "Fulcio",
) -> list[x509.Certificate]:
    """The verified chain above ``leaf`` (issuer first) at ``at``, to one of ``authorities`` (named ``roots`` in
    messages) trusted at that time."""
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise Rejected(
            f"certificate expired at {source} time {iso(at)}: valid only from "
            f"{iso(leaf.not_valid_before_utc)} to {iso(leaf.not_valid_after_utc)}"
        )
    anchors = [cert for ca in authorities if ca.validity.contains(at) for cert in ca.certificates]
    if not anchors:
        raise Rejected(f"no configured {roots} CA is valid at {iso(at)}")
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(at)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(leaf, list(intermediates)).chain
    except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
        raise Rejected(f"certificate does not chain to a configured {roots} root at {iso(at)}: {exc}") from None
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        raise Rejected("certificate lacks keyUsage or extendedKeyUsage") from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise Rejected("certificate is not a code-signing certificate")
    return list(chain[1:])
