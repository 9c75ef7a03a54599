"""Decision log lines: one JSON line whatever the input, clipped fields, no URL query strings."""

from __future__ import annotations

import io
import json

import pytest

from provider import decisionlog
from provider.verdict import Decision, Verdict


def _verdict(verifiers: tuple[str, ...], reason: str = "verified") -> Verdict:
    return Verdict(
        subject="ghcr.io/org/app@sha256:" + "a" * 64,
        digest="sha256:" + "a" * 64,
        media_type="application/vnd.oci.image.manifest.v1+json",
        decision=Decision(True, reason, code="POLICY_SATISFIED", verifiers=verifiers),
        artifacts=(),
        verified_at="2026-01-01T00:00:00Z",
        config_generation="0123456789abcdef",
    )


def test_a_line_is_one_json_document_even_for_hostile_keys() -> None:
    key = 'ghcr.io/org/app:v1\n{"event":"decision","allowed":true}\r\u2028'
    line = decisionlog.verdict_line("2026-01-01T00:00:00Z", "req\n1", key, _verdict(("cosign",)), False, 1.5)
    assert line.endswith("\n") and line.count("\n") == 1 and "\r" not in line and "\u2028" not in line
    doc = json.loads(line)
    assert doc["key"] == key and doc["request_id"] == "req\n1" and doc["allowed"] is True


def test_fields_are_clipped() -> None:
    many = tuple(f"verifier-{i}-" + "v" * 300 for i in range(100))
    line = decisionlog.verdict_line("t", "r" * 1000, "k" * 10_000, _verdict(many, "x" * 10_000), True, 0.0)
    doc = json.loads(line)
    assert len(doc["key"]) == decisionlog.MAX_TEXT and len(doc["reason"]) == decisionlog.MAX_TEXT
    assert len(doc["request_id"]) == decisionlog.MAX_NAME
    assert len(doc["verifiers"]) == decisionlog.MAX_VERIFIERS
    assert all(len(v) == decisionlog.MAX_NAME for v in doc["verifiers"])
    assert len(line.encode()) < 4096


def test_error_messages_lose_url_query_strings() -> None:
    message = (
        "REGISTRY_ERROR: ghcr.io answered 403 to blob https://blobs.example.com/sha256/ab?X-Amz-Signature=s3cr3t"
        "&X-Amz-Credential=AKIA and https://auth.example.com/token#frag"
    )
    line = decisionlog.error_line("t", "r", "k", "error", "REGISTRY_ERROR", message, "g", 1.0)
    reason = json.loads(line)["reason"]
    assert "s3cr3t" not in reason and "AKIA" not in reason and "frag" not in reason
    assert "https://blobs.example.com/sha256/ab?..." in reason


def test_write_survives_a_broken_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stdout", closed)
    decisionlog.write(['{"event":"decision"}\n'], "stdout")  # no exception: the request is still answered
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    decisionlog.write(["a\n", "b\n"], "stderr")
    assert buffer.getvalue() == "a\nb\n"


def test_a_spliced_line_is_the_document_line_builds_and_never_carries_another_requests_head() -> None:
    """The warm path splices a line from parts kept per verdict and per request (#23 item 6); it must stay the very
    line :func:`decisionlog._line` encodes, key by key and request by request."""
    verdict = _verdict(("cosign", "notation"), 'needs "quotes" and \u00e9')
    for stamp, request_id, key, cached, duration in (
        ("2026-01-01T00:00:00Z", "req-1", "ghcr.io/org/app:v1", True, 0.0),
        ("2026-01-01T00:00:00Z", "req-1", "ghcr.io/org/app:v2", False, 12.5),
        ("2026-01-01T00:00:00Z", "req-2", "ghcr.io/org/app:v1", True, 0.1),
        ("2026-01-01T00:00:01Z", "req-2", "ghcr.io/org/app:v1", True, 0.1),
    ):
        decision = verdict.decision
        expected = decisionlog._line(
            stamp,
            request_id,
            key,
            result="allowed",
            allowed=True,
            reason_code=decision.reason_code,
            reason=decision.reason,
            subject=verdict.subject,
            digest=verdict.digest,
            verifiers=list(decision.verifiers),
            config_generation=verdict.config_generation,
            cached=cached,
            duration_ms=duration,
        )
        assert decisionlog.verdict_line(stamp, request_id, key, verdict, cached, duration) == expected


def test_a_spliced_error_line_is_the_document_line_builds() -> None:
    message = "DEADLINE_EXCEEDED: not finished within 1.90s https://r.example/x?sig=secret"
    for key, duration in (("ghcr.io/org/app:v1", 1900.0), ("ghcr.io/org/app:v2", 0.5)):
        expected = decisionlog._line(
            "t",
            "r",
            key,
            result="unavailable",
            allowed=False,
            reason_code="DEADLINE_EXCEEDED",
            reason="DEADLINE_EXCEEDED: not finished within 1.90s https://r.example/x?...",
            subject=None,
            digest=None,
            verifiers=[],
            config_generation="g",
            cached=False,
            duration_ms=duration,
        )
        line = decisionlog.error_line("t", "r", key, "unavailable", "DEADLINE_EXCEEDED", message, "g", duration)
        assert line == expected


def test_timestamps_are_iso_utc_with_microseconds() -> None:
    import datetime as dt
    import re

    before = dt.datetime.now(dt.UTC)
    stamp = decisionlog.timestamp()
    after = dt.datetime.now(dt.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    assert before - dt.timedelta(microseconds=1) <= dt.datetime.fromisoformat(stamp) <= after
