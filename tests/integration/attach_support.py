"""Shared pieces of the ``referee attach`` and oras-py interop tests: evidence documents, a configuration that
requires an SBOM, a scan and a VEX document, and the CLI run in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider import mediatypes as mt
from provider.cli import main

RULES = ("sbom", "scan", "vex")


def spdx(name: str) -> bytes:
    return json.dumps(
        {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": name,
            "documentNamespace": f"https://example.com/spdx/{name}",
            "creationInfo": {"created": "2026-06-01T10:00:00Z", "creators": ["Tool: test"]},
            "packages": [
                {
                    "name": "openssl",
                    "SPDXID": "SPDXRef-Package-openssl",
                    "versionInfo": "3.0.7-r0",
                    "downloadLocation": "NOASSERTION",
                    "licenseConcluded": "Apache-2.0",
                }
            ],
        }
    ).encode()


def sarif(findings: list[tuple[str, str]]) -> bytes:
    """Trivy-shaped SARIF: one rule and one result per (CVE, severity) in package openssl."""
    rules = [
        {
            "id": cve,
            "name": "OsPackageVulnerability",
            "help": {"text": f"Vulnerability {cve}\nSeverity: {severity}\nPackage: openssl"},
            "properties": {"tags": ["vulnerability", "security", severity]},
        }
        for cve, severity in findings
    ]
    results = [
        {"ruleId": cve, "ruleIndex": i, "level": "error", "message": {"text": f"Package: openssl\n{cve}"}}
        for i, (cve, _) in enumerate(findings)
    ]
    run = {"tool": {"driver": {"name": "Trivy", "version": "0.50.0", "rules": rules}}, "results": results}
    return json.dumps({"version": "2.1.0", "runs": [run]}).encode()


def openvex(image_digest: str, cve: str = "CVE-2024-1000") -> bytes:
    product = f"pkg:oci/app@{image_digest.replace(':', '%3A')}"
    return json.dumps(
        {
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": f"https://example.com/vex/{cve}",
            "author": "Security Team",
            "timestamp": "2026-05-30T00:00:00Z",
            "version": 1,
            "statements": [
                {
                    "vulnerability": {"name": cve},
                    "products": [{"@id": product}],
                    "status": "not_affected",
                    "justification": "vulnerable_code_not_in_execute_path",
                }
            ],
        }
    ).encode()


def evidence_files(directory: Path, image_digest: str) -> dict[str, Path]:
    """The three documents a pusher attaches: an SBOM, a scan (one MEDIUM finding) and a VEX document."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "sbom": (directory / "sbom.spdx.json", spdx("app")),
        "scan": (directory / "scan.sarif", sarif([("CVE-2024-1000", "MEDIUM")])),
        "vex": (directory / "app.openvex.json", openvex(image_digest)),
    }
    for path, body in files.values():
        path.write_bytes(body)
    return {name: path for name, (path, _) in files.items()}


TYPES = {"sbom": mt.SPDX_JSON, "scan": mt.SARIF_JSON, "vex": mt.OPENVEX_JSON}


def write_config(path: Path, plain_hosts: list[str], *, hosts: list[dict[str, Any]] | None = None) -> Path:
    """Requires one verified SBOM, one scan (nothing above HIGH, at most a week old) and one VEX document."""
    doc: dict[str, Any] = {
        "registries": {
            "allow": ["127.0.0.1:*"],
            "hosts": [{"host": h, "plainHttp": True} for h in plain_hosts] + list(hosts or []),
        },
        "verifiers": [
            {"name": "sbom", "type": "sbom"},
            {
                "name": "scan",
                "type": "vulnerability-report",
                "artifactTypes": [mt.SARIF_JSON],
                "maxSeverity": "HIGH",
                "maximumAge": "168h",
            },
            {"name": "vex", "type": "vex"},
        ],
        "policy": {"type": "rules", "rules": [{"name": n, "verifiers": [n]} for n in RULES]},
        "cache": {"verdictTtl": 0},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``referee ARGV`` in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def attach(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run_cli(capsys, "attach", "--output", "json", *argv)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def verify(capsys: pytest.CaptureFixture[str], config: Path, ref: str, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run_cli(capsys, "verify", "--config", str(config), "--output", "json", *extra, ref)
    [item] = json.loads(out)
    assert "value" in item, item
    value: dict[str, Any] = item["value"]
    return code, value


def succeeded(verdict: dict[str, Any]) -> dict[str, list[str]]:
    """Digests each verifier accepted."""
    out: dict[str, list[str]] = {}
    for a in verdict["artifacts"]:
        if a["succeeded"] and a.get("error") is None:
            out.setdefault(a["verifier"], []).append(a["digest"])
    return out
