"""Configuration mistakes a new user makes, each reported once, at its root, with what to write instead (#20 item 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.config import load_config_bytes
from provider.errors import ConfigError

ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main"


def problems(document: dict[str, Any], base: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config_bytes(yaml.safe_dump(document).encode(), base)
    return list(exc.value.problems)


def cosign(**params: Any) -> dict[str, Any]:
    return {
        "registries": {"allow": ["*"]},
        "verifiers": [{"name": "ci", "type": "cosign", **params}],
        "policy": {"type": "required-verifiers", "required": ["ci"]},
    }


def test_cosign_cli_identity_flags_point_to_identities(tmp_path: Path) -> None:
    found = problems(cosign(certificateIdentity=IDENTITY, certificateOidcIssuer=ISSUER), tmp_path)
    # one problem: not "unknown key" twice, nor the follow-on "at least one public key or keyless identity"
    assert found == [
        "verifiers[0].certificateIdentity: certificateIdentity, certificateOidcIssuer are cosign CLI flags; Referee "
        "takes a list of keyless identities, each with identity (or identityRegExp) and issuer (or issuerRegExp): "
        f'identities: [{{identity: "{IDENTITY}", issuer: "{ISSUER}"}}]'
    ]


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("certificateIdentityRegexp", "identityRegExp"),
        ("certificateOidcIssuerRegexp", "issuerRegExp"),
        ("certificateOIDCIssuer", "issuer"),
    ],
)
def test_each_identity_flag_names_its_field(tmp_path: Path, flag: str, field: str) -> None:
    (problem,) = problems(cosign(**{flag: "x"}), tmp_path)
    assert problem.startswith(f"verifiers[0].{flag}: {flag} is a cosign CLI flag;")
    assert problem.endswith(f'identities: [{{{field}: "x"}}]')


def test_other_cosign_cli_flags_say_what_replaces_them(tmp_path: Path) -> None:
    found = problems(cosign(key="cosign.pub", insecureIgnoreTlog=True), tmp_path)
    assert found == [
        "verifiers[0].key: key is a cosign CLI flag; here: keys: [<PEM text, file path or KMS URI>] (a list)",
        "verifiers[0].insecureIgnoreTlog: insecureIgnoreTlog is a cosign CLI flag; here: requireTlog: false",
    ]


def test_a_correct_identity_list_is_accepted_beside_nothing_else(tmp_path: Path) -> None:
    """The spelling the hint proposes is the one Referee accepts (it fails only for missing trust material)."""
    found = problems(cosign(identities=[{"identity": IDENTITY, "issuer": ISSUER}]), tmp_path)
    assert found and all("cosign CLI" not in p and "unknown key" not in p for p in found)
    assert any("keyless identities need Fulcio roots" in p for p in found)


def notation(scopes: list[str], stores: dict[str, Any]) -> dict[str, Any]:
    policy = {
        "name": "p",
        "registryScopes": scopes,
        "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:x"],
        "trustedIdentities": ["*"],
    }
    return {
        "registries": {"allow": ["*"]},
        "verifiers": [
            {
                "name": "n",
                "type": "notation",
                "trustPolicy": {"version": "1.0", "trustPolicies": [policy]},
                "trustStores": stores,
            }
        ],
        "policy": {"type": "required-verifiers", "required": ["n"]},
    }


def test_notation_scope_with_a_wildcard_says_only_a_lone_star_is_allowed(tmp_path: Path) -> None:
    found = problems(notation(["registry.example.com/*"], {"ca": {"x": []}}), tmp_path)
    assert (
        "verifiers[0].trustPolicy.trustPolicies[0].registryScopes[0]: 'registry.example.com/*': a scope cannot hold "
        "a wildcard; only '*' alone (every repository) is allowed, otherwise list fully qualified repositories "
        "(host/repo)"
    ) in found
    bad_repo = problems(notation(["registry.example.com"], {"ca": {"x": []}}), tmp_path)
    assert any("'registry.example.com' is not a fully qualified repository" in p for p in bad_repo)


def test_a_broken_trust_store_is_reported_once_not_again_by_the_policy_naming_it(tmp_path: Path) -> None:
    found = problems(notation(["*"], {"ca": {"x": []}}), tmp_path)
    assert found == ["verifiers[0].trustStores.ca.x: expected a non-empty list of files, directories or inline PEM"]
    missing = problems(notation(["*"], {"ca": {"other": []}}), tmp_path)
    assert any("uses ca:x, which is not configured under trustStores.ca" in p for p in missing)


@pytest.mark.parametrize("value", ["7d", "1d12h", "7d0h", "1h30m", "250ms"])
def test_durations_with_days_pass_the_chart_schema_too(value: str) -> None:
    """Referee accepts days (``7d``, ``1d12h``); the chart's generated schema must not reject what Referee takes."""
    import helm_python as helm

    from tests.support.chart import CHART

    values = {"gatekeeper": {"clientCA": {"secretName": "ca"}}, "config": {"cache": {"verdictTtl": value}}}
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({**values, "config": {"cache": {"verdictTtl": "5 minutes"}}})
