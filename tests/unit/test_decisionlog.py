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
