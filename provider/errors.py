"""Error hierarchy: one root, stable codes, and whether a fault is transient.

A *transient* fault (deadline, 5xx, 429, connection or token failure) must never be cached as a
per-key answer; Gatekeeper would keep the image denied for minutes after the registry recovers.
A *deterministic* fault (invalid reference, digest mismatch, disallowed registry) is a per-key error.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Root of every error Referee raises on purpose."""

    code: str = "PROVIDER_ERROR"
    transient: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigError(ProviderError):
    """The configuration is invalid. ``problems`` lists every ``path: message`` found."""

    code = "CONFIG_INVALID"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ReferenceInvalidError(ProviderError):
    code = "REFERENCE_INVALID"


class RegistryNotAllowedError(ProviderError):
    code = "REGISTRY_NOT_ALLOWED"


class NotFoundError(ProviderError):
    """The subject (image) does not exist in the store."""

    code = "NOT_FOUND"


class DigestMismatchError(ProviderError):
    code = "DIGEST_MISMATCH"


class SubjectMismatchError(ProviderError):
    """A listed referrer is about another subject: never evidence for this one."""

    code = "SUBJECT_MISMATCH"


class ArtifactTooLargeError(ProviderError):
    code = "ARTIFACT_TOO_LARGE"


class ManifestInvalidError(ProviderError):
    code = "MANIFEST_INVALID"


class UnsupportedError(ProviderError):
    code = "UNSUPPORTED"


class AuthDeniedError(ProviderError):
    """Credentials were refused (deterministic until configuration changes)."""

    code = "AUTH_DENIED"


class AuthUnavailableError(ProviderError):
    """The token service could not be reached or failed: retry later."""

    code = "AUTH_UNAVAILABLE"
    transient = True


class RegistryUnavailableError(ProviderError):
    """Connection failure, 5xx or 429 after retries."""

    code = "REGISTRY_UNAVAILABLE"
    transient = True


class RegistryError(ProviderError):
    """An unexpected, non-retryable registry answer (4xx other than 401/404/429)."""

    code = "REGISTRY_ERROR"


class StoreUnavailableError(ProviderError):
    """An evidence store (Grafeas, lookaside) could not be reached or answered 5xx/429 after retries."""

    code = "STORE_UNAVAILABLE"
    transient = True


class StoreError(ProviderError):
    """An evidence store gave an answer Referee cannot use (4xx, malformed listing): deterministic."""

    code = "STORE_ERROR"


class DeadlineExceededError(ProviderError):
    code = "DEADLINE_EXCEEDED"
    transient = True


class VerificationError(ProviderError):
    """A verifier could not decide (malformed input it cannot judge, missing trust material)."""

    code = "VERIFICATION_ERROR"


class RevocationUnavailableError(ProviderError):
    """An enforced revocation check could not reach any responder in time: undecided, so not cached."""

    code = "REVOCATION_UNAVAILABLE"
    transient = True


class OverloadedError(ProviderError):
    """Too much shared work is pending: answered as transient so Gatekeeper asks again."""

    code = "OVERLOADED"
    transient = True


class InternalError(ProviderError):
    """A bug: reported without detail, never cached by Gatekeeper (named in ``systemError``)."""

    code = "INTERNAL_ERROR"
    transient = True


class ReferrersCappedError(ProviderError):
    """Referrers were listed beyond ``limits.maxReferrers`` (per artifact type) or a listing limit: the verdict
    was decided without examining them and says so."""

    code = "REFERRERS_CAPPED"


class RequestInvalidError(ProviderError):
    """A ProviderRequest that cannot be served at all."""

    code = "REQUEST_INVALID"


class ReferrersIndexInvalidError(ProviderError):
    """``referee attach``: the referrers tag holds something other than an OCI image index; it is left alone."""

    code = "REFERRERS_INDEX_INVALID"


class ReferrersIndexConflictError(ProviderError):
    """``referee attach``: concurrent writers kept replacing the referrers tag index; try again."""

    code = "REFERRERS_INDEX_CONFLICT"


class CredentialProviderError(ProviderError):
    """A kubelet credential provider plugin failed, timed out or answered something unusable: retry later.
    The message never carries the plugin's output (it may hold secrets)."""

    code = "CREDENTIAL_PROVIDER_FAILED"
    transient = True
