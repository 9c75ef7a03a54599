"""The docs agree with what ships and with what the real-chain e2e suite sees (issue #22 items 4-7)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from provider.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Every message a user can get from either webhook or the break-glass policy, as tests/e2e asserts it.
ADMISSION_MESSAGES = [
    "is not verified by Referee",
    "denied by Referee: <CODE>",
    "is not pinned to a digest: the referee-mutate Assigns could not resolve it (requireDigest)",
    "Referee verification unavailable",
    "context deadline exceeded",
    "keys not answered, retry",
    "no verdict from Referee",
    "Warning: [verified-images-break-glass-report] break-glass override",
    "only members of the group referee-break-glass may set the referee.dev/break-glass annotation",
    'admission webhook "mutation.gatekeeper.sh" denied the request: failed to resolve external data placeholders',
    "open /tmp/audit: no such file or directory",
]


def _troubleshooting() -> str:
    text = (DOCS / "deploy.md").read_text()
    return text[text.index("## Troubleshooting") :]


def test_troubleshooting_covers_every_admission_message() -> None:
    table = _troubleshooting()
    missing = [message for message in ADMISSION_MESSAGES if message not in table]
    assert missing == []


def test_protocol_example_providers_are_the_shipped_ones() -> None:
    block = re.search(r"```yaml\n(apiVersion: externaldata.*?)```", (DOCS / "protocol.md").read_text(), re.DOTALL)
    assert block is not None
    documented = {d["metadata"]["name"]: d for d in yaml.safe_load_all(block.group(1))}
    shipped = {}
    for path in sorted((ROOT / "gatekeeper" / "provider").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        shipped[doc["metadata"]["name"]] = doc
    assert documented == shipped


def test_documented_answer_deadlines_follow_the_defaults() -> None:
    d = ServerConfig()
    verify = d.provider_timeout - d.deadline_margin
    mutate = d.mutate_provider_timeout - d.mutate_deadline_margin
    text = (DOCS / "configuration.md").read_text()
    assert f"`/verify` answers within {verify:g} s and `/mutate` within {mutate:g} s" in text


def test_mutate_log_events_are_documented() -> None:
    text = (DOCS / "deploy.md").read_text()
    assert "`key_pinned`" in text and "`key_not_pinned`" in text


def test_gatekeeper_setup_in_the_docs_is_the_one_the_e2e_suite_runs() -> None:
    deploy = (DOCS / "deploy.md").read_text()
    assert "-f gatekeeper/gatekeeper-values.yaml" in deploy
    assert "--api-cache-dir" in deploy
    assert "requireDigest: true" in deploy
    values = yaml.safe_load((ROOT / "gatekeeper" / "gatekeeper-values.yaml").read_text())
    assert values["validatingWebhookTimeoutSeconds"] > 2 and values["mutatingWebhookTimeoutSeconds"] > 1
    assert "tls.extraDnsNames" in deploy
