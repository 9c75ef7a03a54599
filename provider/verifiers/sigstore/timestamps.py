"""RFC 3161 timestamps from configured timestamp authorities (``rfc3161-client``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rfc3161_client import VerificationError as TimestampVerificationError
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from provider.verifiers.sigstore.common import Rejected
from provider.verifiers.sigstore.trust import Authority


def verify_timestamp(response: bytes, message: bytes, tsas: Sequence[Authority]) -> datetime:
    """An RFC 3161 ``TimeStampResp`` over ``message`` from a configured TSA; returns its genTime."""
    try:
        parsed = decode_timestamp_response(response)
    except ValueError:
        raise Rejected("RFC 3161 timestamp is not a TimeStampResp") from None
    for tsa in tsas:
        certs = tsa.certificates
        builder = VerifierBuilder().add_root_certificate(certs[-1])
        if len(certs) > 1:
            builder = builder.tsa_certificate(certs[0])
        for cert in certs[1:-1]:
            builder = builder.add_intermediate_certificate(cert)
        try:
            builder.build().verify_message(parsed, message)
        except (TimestampVerificationError, ValueError):
            continue
        gen_time = parsed.tst_info.gen_time
        gen_time = gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC)
        if tsa.validity.contains(gen_time):
            return gen_time
    raise Rejected("RFC 3161 timestamp does not verify with a configured timestamp authority")
