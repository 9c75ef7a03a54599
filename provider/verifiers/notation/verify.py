"""The verification workflow of ``trust-store-trust-policy.md`` ("Signature Verification"), step by step.

Policy selection → (skip) → integrity → authenticity (trust store, trusted identity) → expiry → authentic
timestamp → revocation → the payload's ``targetArtifact`` equals the artifact. Each check is enforced, logged
or skipped as the policy's level says; an enforced failure ends the workflow, a logged one is recorded in the
verdict details and the workflow goes on, as in notation-go.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from provider.errors import RevocationUnavailableError
from provider.oci import Descriptor
from provider.verifiers.base import VerifierResult
from provider.verifiers.notation import envelope_cose, envelope_jws
from provider.verifiers.notation import x509 as nx509
from provider.verifiers.notation.config import NotationParams
from provider.verifiers.notation.envelope import (
    AUTHENTIC_TIMESTAMP,
    AUTHENTICITY,
    ENVELOPE_TYPES,
    EXPIRY,
    INTEGRITY,
    MEDIA_TYPE_COSE,
    MEDIA_TYPE_JWS,
    REVOCATION,
    SCHEME_SIGNING_AUTHORITY,
    CheckFailure,
    SignerInfo,
)
from provider.verifiers.notation.revocation import NOT_REVOCABLE, RevocationChecker
from provider.verifiers.notation.timestamp import Timestamp, TimestampError, verify_token
from provider.verifiers.notation.trustpolicy import ENFORCE, LOG, SKIP, TrustPolicy

log = structlog.get_logger("referee.notation")

TARGET = "targetArtifact"


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


@dataclass
class _Run:
    """Accumulates check outcomes and verdict details for one signature."""

    policy: TrustPolicy
    details: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, dict[str, str]] = field(default_factory=dict)

    def passed(self, check: str, note: str | None = None) -> None:
        entry = {"action": self.policy.level.action(check), "outcome": "passed"}
        if note:
            entry["note"] = note
        self.checks[check] = entry

    def skipped(self, check: str, why: str) -> None:
        self.checks[check] = {"action": SKIP, "outcome": "skipped", "reason": why}

    def failed(self, check: str, reason: str, action: str | None = None) -> bool:
        """Record a failure; True when it is enforced (the workflow stops)."""
        action = action or self.policy.level.action(check)
        previous = self.checks.get(check)
        if previous is not None and previous.get("outcome") == "failed":
            reason = f"{previous['reason']}; {reason}"
        self.checks[check] = {"action": action, "outcome": "failed", "reason": reason}
        return action == ENFORCE

    def result(self, succeeded: bool, reason: str) -> VerifierResult:
        self.details["checks"] = self.checks
        self.details["enforced"] = [c for c, e in self.checks.items() if e["action"] == ENFORCE]
        self.details["logged"] = [c for c, e in self.checks.items() if e["action"] == LOG]
        logged = [
            f"{c}: {e['reason']}" for c, e in self.checks.items() if e["outcome"] == "failed" and e["action"] == LOG
        ]
        self.details["loggedFailures"] = logged
        if succeeded and logged:
            reason += "; logged failures: " + "; ".join(logged)
        return VerifierResult(succeeded, reason, self.details)

    def stop(self, check: str) -> VerifierResult:
        entry = self.checks[check]
        return self.result(False, f"{check} check failed: {entry['reason']}")


async def verify_signature(
    params: NotationParams,
    revocation: RevocationChecker,
    *,
    repository: str,
    target: Descriptor,
    now: datetime,
    media_type: str,
    load: Callable[[], Awaitable[bytes]],
    manifest_problem: str | None = None,
    details: dict[str, Any] | None = None,
) -> VerifierResult:
    """Judge one signature envelope of ``target`` (an artifact of ``repository``, ``registry/repository``)."""
    policy = params.trust_policy.select(repository)
    base = dict(details or {})
    if policy is None:
        return VerifierResult(False, f"no trust policy applies to {repository}", {**base, "trustPolicy": None})
    run = _Run(policy, {**base, "trustPolicy": policy.name, "level": policy.level.name})
    if policy.level.overridden:
        run.details["levelActions"] = dict(policy.level.actions)
    if policy.level.name == "skip":
        run.details["verified"] = False
        return VerifierResult(
            True, f"trust policy {policy.name!r} has level skip: accepted without verification", run.details
        )
    run.details["verified"] = True
    try:
        if manifest_problem is not None:
            raise CheckFailure(manifest_problem)
        signer = _parse(media_type, await load())
    except CheckFailure as exc:
        run.failed(INTEGRITY, exc.message)
        return run.stop(INTEGRITY)
    run.passed(INTEGRITY)
    run.details.update(_signer_details(signer))
    if _authenticity(run, params, signer):
        return run.stop(AUTHENTICITY)
    if signer.expiry is not None and not now < signer.expiry:
        if run.failed(EXPIRY, f"signature expired at {_iso(signer.expiry)}"):
            return run.stop(EXPIRY)
    else:
        run.passed(EXPIRY, None if signer.expiry is not None else "no expiry")
    if await _authentic_timestamp(run, params, revocation, signer, now):
        return run.stop(AUTHENTIC_TIMESTAMP)
    if await _revocation(run, params, revocation, signer, now):
        return run.stop(REVOCATION)
    problem = _target_problem(signer.payload, target, params.user_metadata)
    if problem is not None:
        run.checks[INTEGRITY] = {"action": ENFORCE, "outcome": "failed", "reason": problem}
        return run.stop(INTEGRITY)
    return run.result(
        True, f"signed by {nx509.subject(signer.leaf)} (trust policy {policy.name!r}, {policy.level.name})"
    )


def _parse(media_type: str, data: bytes) -> SignerInfo:
    if media_type == MEDIA_TYPE_JWS:
        return envelope_jws.parse(data)
    if media_type == MEDIA_TYPE_COSE:
        return envelope_cose.parse(data)
    raise CheckFailure(
        f"unsupported signature envelope media type {media_type!r} (expected {' or '.join(ENVELOPE_TYPES)})"
    )


def _signer_details(signer: SignerInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "envelope": signer.envelope,
        "signatureAlgorithm": signer.algorithm,
        "signer": nx509.subject(signer.leaf),
        "signerThumbprint": nx509.thumbprint(signer.leaf),
        "chain": [nx509.subject(c) for c in signer.chain],
        "signingScheme": signer.signing_scheme,
        "signingTime": _iso(signer.signing_time),
        "signingTimeAuthentic": signer.signing_scheme == SCHEME_SIGNING_AUTHORITY,
        "expiry": _iso(signer.expiry),
        "timestamp": None,
    }
    if signer.signing_agent:
        out["signingAgent"] = signer.signing_agent
    return out


def _authenticity(run: _Run, params: NotationParams, signer: SignerInfo) -> bool:
    """Trust store match, then trusted identity. True when an enforced failure stops the workflow."""
    store_type = "signingAuthority" if signer.signing_scheme == SCHEME_SIGNING_AUTHORITY else "ca"
    names = run.policy.stores(store_type)
    trusted = params.certificates(store_type, names)
    failed = False
    if not trusted:
        failed = True
        stop = run.failed(
            AUTHENTICITY,
            f"trust policy {run.policy.name!r} lists no {store_type} trust store for signing scheme "
            f"{signer.signing_scheme}",
        )
    else:
        anchors = {nx509.der(c) for c in trusted}
        match = next((c for c in signer.chain if nx509.der(c) in anchors), None)
        stores = ", ".join(f"{store_type}:{n}" for n in names)
        if match is None:
            failed = True
            stop = run.failed(AUTHENTICITY, f"certificate chain does not chain to a certificate in {stores}")
        else:
            run.details["trustAnchor"] = nx509.subject(match)
            stop = False
    if stop:
        return True
    if not run.policy.any_identity:
        try:
            subject = nx509.subject_attributes(signer.leaf)
            identity = next((i for i in run.policy.identities if i.matches(subject)), None)
        except nx509.ChainError as exc:
            identity, problem = None, str(exc)
        else:
            problem = (
                f"signer {nx509.subject(signer.leaf)!r} does not match the trusted identities "
                f"{[i.raw for i in run.policy.identities]}"
            )
        if identity is None:
            return run.failed(AUTHENTICITY, problem)
        run.details["trustedIdentity"] = identity.raw
    if not failed:
        run.passed(AUTHENTICITY)
    return False


async def _authentic_timestamp(
    run: _Run, params: NotationParams, revocation: RevocationChecker, signer: SignerInfo, now: datetime
) -> bool:
    chain = signer.chain
    if signer.signing_scheme == SCHEME_SIGNING_AUTHORITY:
        for cert in chain:
            if not nx509.valid_at(cert, signer.signing_time):
                return run.failed(
                    AUTHENTIC_TIMESTAMP,
                    f"certificate {nx509.subject(cert)!r} ({nx509.validity(cert)}) was not valid at the authentic "
                    f"signing time {_iso(signer.signing_time)}",
                )
        run.passed(AUTHENTIC_TIMESTAMP, "authentic signing time within the chain's validity")
        return False
    tsa_names = run.policy.stores("tsa")
    perform = bool(tsa_names)
    note = "no tsa trust store in the policy: chain must be valid now"
    if (
        perform
        and run.policy.verify_timestamp == "afterCertExpiry"
        and not any(now > c.not_valid_after_utc for c in chain)
    ):
        perform = False
        note = "verifyTimestamp afterCertExpiry and the chain has not expired: chain must be valid now"
    if not perform:
        for cert in chain:
            if not nx509.valid_at(cert, now):
                return run.failed(
                    AUTHENTIC_TIMESTAMP,
                    f"certificate {nx509.subject(cert)!r} is not valid now ({_iso(now)}; valid {nx509.validity(cert)})",
                )
        run.passed(AUTHENTIC_TIMESTAMP, note)
        return False
    if not signer.timestamp_token:
        return run.failed(AUTHENTIC_TIMESTAMP, "no timestamp countersignature in the signature envelope")
    try:
        stamp = verify_token(signer.timestamp_token, signer.signature, params.certificates("tsa", tsa_names))
    except TimestampError as exc:
        return run.failed(AUTHENTIC_TIMESTAMP, str(exc))
    run.details["timestamp"] = _timestamp_details(stamp)
    problem = _timestamp_problem(stamp, signer)
    if problem is not None:
        return run.failed(AUTHENTIC_TIMESTAMP, problem)
    mode = params.revocation.tsa_chain
    if params.revocation.mode == "skip" or mode == "skip":
        run.details["timestamp"]["revocation"] = "skipped by configuration"
    else:
        status = await revocation.check(stamp.chain, now)
        run.details["timestamp"]["revocation"] = [c.to_json() for c in status.certificates]
        if status.problem is not None:
            message = f"timestamping {status.problem}"
            if mode == "enforce":
                if status.transient and run.policy.level.action(AUTHENTIC_TIMESTAMP) == ENFORCE:
                    raise RevocationUnavailableError(f"{message}; ask again once the responder answers")
                return run.failed(AUTHENTIC_TIMESTAMP, message)
            run.details["timestamp"]["revocationLogged"] = message
    run.passed(AUTHENTIC_TIMESTAMP, f"timestamped by {stamp.authority}")
    return False


def _timestamp_details(stamp: Timestamp) -> dict[str, Any]:
    return {
        "time": _iso(stamp.gen_time),
        "accuracySeconds": stamp.accuracy.total_seconds(),
        "authority": stamp.authority,
        "policy": stamp.policy,
    }


def _timestamp_problem(stamp: Timestamp, signer: SignerInfo) -> str | None:
    if stamp.lower < signer.signing_time:
        return (
            f"timestamp {_iso(stamp.gen_time)} ± {stamp.accuracy} is not after the signing time "
            f"{_iso(signer.signing_time)}"
        )
    for cert in signer.chain:
        if stamp.lower < cert.not_valid_before_utc or stamp.upper > cert.not_valid_after_utc:
            return (
                f"timestamp {_iso(stamp.gen_time)} ± {stamp.accuracy} is outside the validity of "
                f"{nx509.subject(cert)!r} ({nx509.validity(cert)})"
            )
    return None


async def _revocation(
    run: _Run, params: NotationParams, revocation: RevocationChecker, signer: SignerInfo, now: datetime
) -> bool:
    if run.policy.level.action(REVOCATION) == SKIP:
        run.skipped(REVOCATION, "trust policy override revocation: skip")
        return False
    if params.revocation.mode == "skip":
        run.checks[REVOCATION] = {
            "action": run.policy.level.action(REVOCATION),
            "outcome": "skipped",
            "reason": "not checked: revocation.mode is skip in the Referee configuration",
        }
        return False
    authentic = signer.signing_time if signer.signing_scheme == SCHEME_SIGNING_AUTHORITY else None
    status = await revocation.check(signer.chain, now, authentic)
    run.details["revocation"] = [c.to_json() for c in status.certificates]
    if status.problem is not None:
        if status.transient and run.policy.level.action(REVOCATION) == ENFORCE:
            raise RevocationUnavailableError(f"{status.problem}; ask again once the responder answers")
        return run.failed(REVOCATION, status.problem)
    revocable = [c for c in status.certificates if c.status != NOT_REVOCABLE]
    run.passed(REVOCATION, None if revocable else "no certificate of the chain carries OCSP or CRL locations")
    return False


def _target_problem(payload: bytes, target: Descriptor, user_metadata: dict[str, str] | Any) -> str | None:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, RecursionError, ValueError):
        return "payload is not JSON"
    artifact = doc.get(TARGET) if isinstance(doc, dict) else None
    if not isinstance(artifact, dict):
        return "payload has no targetArtifact descriptor"
    signed = (artifact.get("mediaType"), artifact.get("digest"), artifact.get("size"))
    wanted = (target.media_type, target.digest, target.size)
    if signed != wanted or isinstance(artifact.get("size"), bool):
        return (
            f"the signature is for {signed[1]} ({signed[0]}, {signed[2]} bytes), not this artifact "
            f"{wanted[1]} ({wanted[0]}, {wanted[2]} bytes)"
        )
    annotations = artifact.get("annotations") or {}
    for key, value in user_metadata.items():
        if not isinstance(annotations, dict) or annotations.get(key) != value:
            return f"signed annotations do not contain the required {key}={value}"
    return None
