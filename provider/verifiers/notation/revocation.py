"""Certificate revocation (``Certificate Revocation Evaluation``): OCSP first, CRL (base + delta) as fallback.

Chains are checked root → leaf. A certificate without OCSP or CRL locations is not revocable (good); one with
them is *revoked* or, when no answer can be had, *unknown* — and unknown fails the check like revoked does
(enforced or logged by the trust policy). Where answers come from is configuration:

* ``offline`` (default): only CRL files given in ``revocation.crlFiles``; nothing is fetched.
* ``online``: those files first, then OCSP and CRL URLs from the certificates, fetched with aiohttp only from
  hosts matching ``revocation.allow``, each request bounded by ``revocation.timeout`` and by the deadline of
  the verification (:func:`provider.deadline.remaining`). Definite answers are cached until their
  ``nextUpdate`` (at most ``revocation.cacheTtl``).
* ``skip``: no revocation check at all; verdicts say so.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, CRLEntryExtensionOID, ExtendedKeyUsageOID, ExtensionOID

from provider import deadline
from provider.proxy import proxy_settings
from provider.verifiers.notation import x509 as nx509

log = structlog.get_logger("referee.notation.revocation")

GOOD, REVOKED, UNKNOWN, NOT_REVOCABLE = "good", "revoked", "unknown", "not-revocable"
MODES = ("online", "offline", "skip")
TSA_CHAIN_MODES = ("enforce", "log", "skip")
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class RevocationConfig:
    mode: str = "offline"
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    timeout: float = 2.0
    tsa_chain: str = "enforce"
    allow: tuple[str, ...] = ()
    cache_ttl: float = 3600.0
    max_crl_bytes: int = 8 * 1024 * 1024


class _Notes(list[str]):
    """Why a status could not be had; ``transient`` when a responder was unreachable or out of time."""

    transient = False


@dataclass(frozen=True, slots=True)
class CertStatus:
    subject: str
    status: str
    method: str
    detail: str = ""
    transient: bool = False

    def to_json(self) -> dict[str, str]:
        out = {"subject": self.subject, "status": self.status, "method": self.method}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class ChainStatus:
    certificates: tuple[CertStatus, ...]

    @property
    def status(self) -> str:
        states = {c.status for c in self.certificates}
        if REVOKED in states:
            return REVOKED
        if UNKNOWN in states:
            return UNKNOWN
        return GOOD

    @property
    def transient(self) -> bool:
        """Unknown only because a responder could not be reached in time: worth asking again later."""
        return self.status == UNKNOWN and all(c.transient for c in self.certificates if c.status == UNKNOWN)

    @property
    def problem(self) -> str | None:
        """Why the chain fails (revoked first), or None when every certificate is good or not revocable."""
        for wanted in (REVOKED, UNKNOWN):
            for c in self.certificates:
                if c.status == wanted:
                    what = "is revoked" if wanted == REVOKED else "has unknown revocation status"
                    return f"certificate {c.subject!r} {what} ({c.method}{': ' + c.detail if c.detail else ''})"
        return None


def _mark_transient(notes: list[str]) -> None:
    if isinstance(notes, _Notes):
        notes.transient = True


def _urls(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ocsp_urls: list[str] = []
    crl_urls: list[str] = []
    try:
        aia = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
        assert isinstance(aia, x509.AuthorityInformationAccess)
        for desc in aia:
            if desc.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
                desc.access_location, x509.UniformResourceIdentifier
            ):
                ocsp_urls.append(desc.access_location.value)
    except x509.ExtensionNotFound:
        pass
    try:
        cdp = cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
        assert isinstance(cdp, x509.CRLDistributionPoints)
        for point in cdp:
            for name in point.full_name or ():
                if isinstance(name, x509.UniformResourceIdentifier):
                    crl_urls.append(name.value)
    except x509.ExtensionNotFound:
        pass
    return ocsp_urls, crl_urls


def _verify_with(key: object, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None) -> bool:
    if algorithm is None or isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    if crl.issuer != issuer.subject:
        return False
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def _extension_value(crl: x509.CertificateRevocationList, oid: x509.ObjectIdentifier) -> object | None:
    try:
        return crl.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    value = _extension_value(crl, ExtensionOID.CRL_NUMBER)
    return value.crl_number if isinstance(value, x509.CRLNumber) else None


def _entry_reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        value = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON).value
    except x509.ExtensionNotFound:
        return None
    return value.reason if isinstance(value, x509.CRLReason) else None


def _entry_date(entry: x509.RevokedCertificate) -> datetime:
    try:
        value = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.INVALIDITY_DATE).value
    except x509.ExtensionNotFound:
        return entry.revocation_date_utc
    return value.invalidity_date_utc if isinstance(value, x509.InvalidityDate) else entry.revocation_date_utc


def _single_response(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse | None:
    """The answer about ``cert`` among a response's SingleResponses: same serial, same issuer name and key."""
    for single in response.responses:
        if single.serial_number != cert.serial_number:
            continue
        try:
            expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm).build()
        except (TypeError, ValueError, UnsupportedAlgorithm):
            continue
        if (single.issuer_name_hash, single.issuer_key_hash) == (expected.issuer_name_hash, expected.issuer_key_hash):
            return single
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        value = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        return False
    return isinstance(value, x509.BasicConstraints) and value.ca


def _unsupported_critical(extensions: x509.Extensions, what: str) -> str | None:
    """Why a CRL (or a CRL entry) cannot be used: a critical extension Referee cannot process (RFC 5280 §5.2, §5.3)."""
    for extension in extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            return f"{what} has an unsupported critical extension {extension.oid.dotted_string}"
    return None


def _crl_scope_problem(
    crl: x509.CertificateRevocationList, cert: x509.Certificate, crl_urls: Sequence[str]
) -> str | None:
    """Why ``crl`` cannot speak for ``cert`` (RFC 5280 §5.2.5, §6.3.3 b): its absence from a CRL of another
    scope proves nothing. None when the CRL covers the certificate."""
    critical = _unsupported_critical(crl.extensions, "the CRL")
    if critical is not None:
        return critical
    idp = _extension_value(crl, ExtensionOID.ISSUING_DISTRIBUTION_POINT)
    if not isinstance(idp, x509.IssuingDistributionPoint):
        return None
    if idp.indirect_crl:
        return "indirect CRLs are not supported"
    if idp.only_some_reasons:
        return "the CRL covers only some revocation reasons"
    if idp.only_contains_attribute_certs:
        return "the CRL covers only attribute certificates"
    if idp.only_contains_user_certs and _is_ca(cert):
        return "the CRL covers only end-entity certificates"
    if idp.only_contains_ca_certs and not _is_ca(cert):
        return "the CRL covers only CA certificates"
    if idp.relative_name is not None:
        return "the CRL's distribution point is a relative name, which is not supported"
    if idp.full_name:
        names = {n.value for n in idp.full_name if isinstance(n, x509.UniformResourceIdentifier)}
        if not names & set(crl_urls):
            return "the CRL's distribution point is not one the certificate names"
    return None


class RevocationChecker:
    """Checks chains under one configuration; holds the response cache for that configuration's lifetime."""

    def __init__(self, config: RevocationConfig) -> None:
        self.config = config
        self._cache: dict[tuple[str, ...], tuple[float, object]] = {}
        self._proxy = proxy_settings()[0]  # HTTPS_PROXY/HTTP_PROXY/NO_PROXY, as the registry client uses them

    async def check(
        self, chain: Sequence[x509.Certificate], now: datetime, signing_time: datetime | None = None
    ) -> ChainStatus:
        """Root → leaf. ``signing_time`` (an authentic one) spares certificates revoked after it."""
        results: list[CertStatus] = []
        for i in range(len(chain) - 1, -1, -1):
            cert = chain[i]
            if i == len(chain) - 1:
                results.append(CertStatus(nx509.subject(cert), NOT_REVOCABLE, "root"))
                continue
            results.append(await self._check_one(cert, chain[i + 1], now, signing_time))
        return ChainStatus(tuple(results))

    async def _check_one(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime, signing_time: datetime | None
    ) -> CertStatus:
        subject = nx509.subject(cert)
        ocsp_urls, crl_urls = _urls(cert)
        if not ocsp_urls and not crl_urls:
            return CertStatus(subject, NOT_REVOCABLE, "none", "no OCSP or CRL location")
        notes = _Notes()
        if ocsp_urls:
            if self.config.mode == "online":
                status = await self._ocsp(cert, issuer, ocsp_urls, now, signing_time, notes)
                if status is not None:
                    return status
            else:
                notes.append("OCSP not queried (offline)")
        status = await self._crl(cert, issuer, crl_urls, now, signing_time, notes)
        if status is not None:
            return status
        method = "ocsp" if ocsp_urls and not crl_urls else "crl"
        return CertStatus(subject, UNKNOWN, method, "; ".join(notes), transient=notes.transient)

    # -- OCSP --------------------------------------------------------------------------------------------------

    async def _ocsp(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        urls: Sequence[str],
        now: datetime,
        signing_time: datetime | None,
        notes: list[str],
    ) -> CertStatus | None:
        key = ("ocsp", nx509.thumbprint(issuer), str(cert.serial_number))
        cached = self._cached(key)
        if isinstance(cached, CertStatus):
            return cached
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303
        body = request.public_bytes(serialization.Encoding.DER)
        for url in urls:
            data = await self._fetch(url, notes, body)
            if data is None:
                continue
            status, expires = self._ocsp_status(cert, issuer, data, now, signing_time, url, notes)
            if status is not None:
                if status.status != UNKNOWN:
                    self._remember(key, status, expires)
                    return status
                notes.append(status.detail)
        return None

    def _ocsp_status(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        data: bytes,
        now: datetime,
        signing_time: datetime | None,
        url: str,
        notes: list[str],
    ) -> tuple[CertStatus | None, datetime | None]:
        subject = nx509.subject(cert)
        try:
            response = ocsp.load_der_ocsp_response(data)
        except ValueError:
            notes.append(f"{url}: not an OCSP response")
            return None, None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            notes.append(f"{url}: OCSP status {response.response_status.name}")
            return None, None
        single = _single_response(response, cert, issuer)
        if single is None:
            notes.append(f"{url}: OCSP response is for another certificate")
            return None, None
        signer_key = issuer.public_key()
        responders = [c for c in response.certificates if nx509.is_issued_by(c, issuer)]
        if response.certificates and responders:
            responder = responders[0]
            try:
                eku = responder.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
            except x509.ExtensionNotFound:
                eku = None
            if not isinstance(eku, x509.ExtendedKeyUsage) or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                notes.append(f"{url}: OCSP responder certificate lacks the OCSPSigning usage")
                return None, None
            if not nx509.valid_at(responder, now):
                notes.append(f"{url}: OCSP responder certificate is not valid now")
                return None, None
            signer_key = responder.public_key()
        if not _verify_with(
            signer_key, response.signature, response.tbs_response_bytes, response.signature_hash_algorithm
        ):
            notes.append(f"{url}: OCSP response signature does not verify")
            return None, None
        next_update = single.next_update_utc
        if single.this_update_utc > now or (next_update is not None and now > next_update):
            notes.append(f"{url}: OCSP response is not current")
            return None, None
        if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return CertStatus(subject, GOOD, "ocsp", url), next_update
        if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            revoked_at = single.revocation_time_utc
            if signing_time is not None and revoked_at is not None and signing_time < revoked_at:
                return CertStatus(
                    subject, GOOD, "ocsp", f"revoked {revoked_at.isoformat()}, after signing"
                ), next_update
            when = revoked_at.isoformat() if revoked_at else "unknown time"
            return CertStatus(subject, REVOKED, "ocsp", f"revoked at {when} ({url})"), next_update
        return CertStatus(subject, UNKNOWN, "ocsp", f"{url}: responder says unknown"), None

    # -- CRL ---------------------------------------------------------------------------------------------------

    async def _crl(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        urls: Sequence[str],
        now: datetime,
        signing_time: datetime | None,
        notes: list[str],
    ) -> CertStatus | None:
        subject = nx509.subject(cert)
        bases = [
            c
            for c in self.config.crls
            if _crl_signed_by(c, issuer) and not self._is_delta(c) and self._in_scope(c, cert, urls, "crl file", notes)
        ]
        source = "crl file"
        if not bases and urls:
            if self.config.mode != "online":
                notes.append(f"no CRL file from {nx509.subject(issuer)!r} (offline)")
                return None
            for url in urls:
                crl = await self._download_crl(url, issuer, notes)
                if crl is not None and not self._is_delta(crl) and self._in_scope(crl, cert, urls, url, notes):
                    bases, source = [crl], url
                    break
        if not bases:
            if not urls:
                return None
            notes.append("no CRL could be obtained")
            return None
        base = max(bases, key=lambda c: c.last_update_utc)
        delta = await self._delta(base, issuer, now, notes)
        if delta is False:
            return CertStatus(subject, UNKNOWN, "crl", "; ".join(notes))
        entry = base.get_revoked_certificate_by_serial_number(cert.serial_number)
        delta_entry = (
            delta.get_revoked_certificate_by_serial_number(cert.serial_number)
            if isinstance(delta, x509.CertificateRevocationList)
            else None
        )
        if delta_entry is not None:
            removed = _entry_reason(delta_entry) == x509.ReasonFlags.remove_from_crl
            entry = None if removed else delta_entry
        for listed in (e for e in (entry, delta_entry) if e is not None):
            critical = _unsupported_critical(listed.extensions, "the CRL entry for this certificate")
            if critical is not None:
                notes.append(f"{critical} ({source})")
                return CertStatus(subject, UNKNOWN, "crl", "; ".join(notes))
        if entry is not None:
            when = _entry_date(entry)
            if signing_time is not None and signing_time < when:
                return CertStatus(subject, GOOD, "crl", f"revoked {when.isoformat()}, after signing ({source})")
            return CertStatus(subject, REVOKED, "crl", f"listed in the CRL since {when.isoformat()} ({source})")
        next_update = base.next_update_utc
        if next_update is None or now > next_update or base.last_update_utc > now:
            notes.append(f"CRL from {source} is not current (nextUpdate {next_update})")
            return CertStatus(subject, UNKNOWN, "crl", "; ".join(notes))
        return CertStatus(subject, GOOD, "crl", source)

    @staticmethod
    def _is_delta(crl: x509.CertificateRevocationList) -> bool:
        return _extension_value(crl, ExtensionOID.DELTA_CRL_INDICATOR) is not None

    @staticmethod
    def _in_scope(
        crl: x509.CertificateRevocationList, cert: x509.Certificate, urls: Sequence[str], source: str, notes: list[str]
    ) -> bool:
        problem = _crl_scope_problem(crl, cert, urls)
        if problem is not None:
            notes.append(f"{source}: {problem}")
        return problem is None

    async def _delta(
        self, base: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime, notes: list[str]
    ) -> x509.CertificateRevocationList | bool | None:
        """The newest current delta CRL for ``base`` (RFC 5280 §5.2.4, §6.3.3 c); ``False`` when the base names
        one and none is usable: an old or expired delta must not hide a later revocation."""
        freshest = _extension_value(base, ExtensionOID.FRESHEST_CRL)
        if not isinstance(freshest, x509.FreshestCRL):
            return None
        base_number = _crl_number(base)
        base_scope = _extension_value(base, ExtensionOID.ISSUING_DISTRIBUTION_POINT)

        def usable(delta: x509.CertificateRevocationList, source: str) -> bool:
            indicator = _extension_value(delta, ExtensionOID.DELTA_CRL_INDICATOR)
            number = _crl_number(delta)
            if not (
                isinstance(indicator, x509.DeltaCRLIndicator)
                and base_number is not None
                and number is not None
                and indicator.crl_number <= base_number < number
            ):
                notes.append(f"{source}: delta CRL does not apply to base CRL number {base_number}")
                return False
            if _extension_value(delta, ExtensionOID.ISSUING_DISTRIBUTION_POINT) != base_scope:
                notes.append(f"{source}: delta CRL scope differs from the base CRL's")
                return False
            critical = _unsupported_critical(delta.extensions, "the CRL")
            if critical is not None:
                notes.append(f"{source}: {critical}")
                return False
            next_update = delta.next_update_utc
            if next_update is None or now > next_update or delta.last_update_utc > now:
                notes.append(f"{source}: delta CRL is not current (nextUpdate {next_update})")
                return False
            return True

        candidates = [
            c
            for c in self.config.crls
            if self._is_delta(c) and _crl_signed_by(c, issuer) and usable(c, "delta crl file")
        ]
        if not candidates and self.config.mode == "online":
            for point in freshest:
                for name in point.full_name or ():
                    if isinstance(name, x509.UniformResourceIdentifier):
                        crl = await self._download_crl(name.value, issuer, notes)
                        if crl is not None and self._is_delta(crl) and usable(crl, name.value):
                            candidates.append(crl)
        if candidates:
            return max(candidates, key=lambda c: _crl_number(c) or 0)
        notes.append("the base CRL requires a delta CRL that is unavailable")
        return False

    async def _download_crl(
        self, url: str, issuer: x509.Certificate, notes: list[str]
    ) -> x509.CertificateRevocationList | None:
        cached = self._cached(("crl", url))
        if isinstance(cached, x509.CertificateRevocationList):
            return cached
        data = await self._fetch(url, notes, None)
        if data is None:
            return None
        try:
            crl = x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
        except ValueError:
            notes.append(f"{url}: not a CRL")
            return None
        if not _crl_signed_by(crl, issuer):
            notes.append(f"{url}: CRL is not signed by {nx509.subject(issuer)!r}")
            return None
        self._remember(("crl", url), crl, crl.next_update_utc)
        return crl

    # -- transport and cache -----------------------------------------------------------------------------------

    def allowed(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        return any(fnmatch.fnmatchcase(host, p) or fnmatch.fnmatchcase(parts.hostname, p) for p in self.config.allow)

    async def _fetch(self, url: str, notes: list[str], body: bytes | None) -> bytes | None:
        if not self.allowed(url):
            notes.append(f"{url}: host not in revocation.allow")
            return None
        remaining = deadline.remaining()
        budget = self.config.timeout if remaining is None else min(self.config.timeout, remaining)
        if budget <= 0:
            notes.append(f"{url}: no time left before the deadline")
            _mark_transient(notes)
            return None
        started = time.perf_counter()
        try:
            headers: dict[str, str] = {} if body is None else {"Content-Type": "application/ocsp-request"}
            proxy_url, proxy_headers = self._proxy.arguments(url, headers)
            async with asyncio.timeout(budget), aiohttp.ClientSession(trust_env=False) as session:
                if body is None:
                    request = session.get(
                        url, headers=headers, allow_redirects=False, proxy=proxy_url, proxy_headers=proxy_headers
                    )
                else:
                    request = session.post(
                        url,
                        data=body,
                        headers=headers,
                        allow_redirects=False,
                        proxy=proxy_url,
                        proxy_headers=proxy_headers,
                    )
                async with request as response:
                    if response.status // 100 != 2:
                        notes.append(f"{url}: HTTP {response.status}")
                        if response.status >= 500 or response.status == 429:
                            _mark_transient(notes)
                        return None
                    data = await response.content.read(self.config.max_crl_bytes + 1)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            notes.append(f"{url}: {type(exc).__name__}")
            _mark_transient(notes)
            log.warning("revocation_fetch_failed", url=url, error=type(exc).__name__)
            return None
        if len(data) > self.config.max_crl_bytes:
            notes.append(f"{url}: response larger than {self.config.max_crl_bytes} bytes")
            return None
        log.info("revocation_fetched", url=url, bytes=len(data), ms=round((time.perf_counter() - started) * 1000, 1))
        return data

    def _cached(self, key: tuple[str, ...]) -> object | None:
        found = self._cache.get(key)
        if found is None:
            return None
        expires, value = found
        if time.monotonic() >= expires:
            del self._cache[key]
            return None
        return value

    def _remember(self, key: tuple[str, ...], value: object, next_update: datetime | None) -> None:
        ttl = self.config.cache_ttl
        if next_update is not None:
            ttl = min(ttl, max(0.0, (next_update - datetime.now(next_update.tzinfo)).total_seconds()))
        if ttl <= 0:
            return
        if len(self._cache) >= _CACHE_MAX:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (time.monotonic() + ttl, value)
