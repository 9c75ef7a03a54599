"""Keys in a KMS (#20 item 9): ``keys: [awskms://…]`` against moto's AWS KMS in server mode on 127.0.0.1.

The image is signed the way ``cosign sign --key awskms://…`` signs: the KMS key signs the simple-signing payload
(``Sign``, ECDSA_SHA_256); Referee fetches the public key once, at configuration load (``GetPublicKey``), and
verifies the signature with it. moto is a faithful AWS KMS implementation that runs here; GCP KMS, Azure Key
Vault and HashiCorp Vault have no local server installable here, so those references are refused with the
export command instead (docs/configuration.md, "Keys in a KMS").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import moto.server as moto_server
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from provider.config import load_config
from provider.errors import ConfigError
from tests.integration.attach_support import run_cli
from tests.support import content
from tests.support.content import make_image, push_image
from tests.support.registry import RegistryProcess

REPO = "kms/app"
ALIAS = "alias/referee-release"


class Kms:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client: Any = boto3.client("kms", region_name="eu-west-1", endpoint_url=endpoint)
        key = self.client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
        self.arn: str = key["Arn"]
        self.client.create_alias(AliasName=ALIAS, TargetKeyId=key["KeyId"])
        encryption = self.client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
        self.encryption_key: str = encryption["KeyId"]

    def sign(self, _unused_key: object, payload: bytes) -> str:
        signed = self.client.sign(KeyId=ALIAS, Message=payload, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
        return base64.b64encode(signed["Signature"]).decode()


@pytest.fixture(scope="module")
def kms() -> Iterator[Kms]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv("AWS_CONFIG_FILE", "/dev/null")
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        env.setenv("AWS_ENDPOINT_URL_KMS", f"http://{host}:{port}")
        try:
            yield Kms(f"http://{host}:{port}")
        finally:
            server.stop()


def _config(path: Path, registry: RegistryProcess, key: str) -> Path:
    doc = {
        "registries": {"allow": [registry.host], "hosts": [{"host": registry.host, "plainHttp": True}]},
        "verifiers": [{"name": "release", "type": "cosign", "keys": [key]}],
        "policy": {"type": "required-verifiers", "required": ["release"]},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_cosign_signature_made_with_an_aws_kms_key_verifies(
    kms: Kms,
    registry: RegistryProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = make_image("kms-signed")
    push_image(registry.url, REPO, "v1", image)
    unsigned = make_image("kms-unsigned")
    push_image(registry.url, REPO, "v2", unsigned)
    monkeypatch.setattr(content, "cosign_sign_payload", kms.sign)  # cosign sign --key awskms://… does this
    content.cosign_sign_legacy(registry.url, REPO, image["digest"], ec.generate_private_key(ec.SECP256R1()))
    for reference in (f"awskms:///{ALIAS}", f"awskms:///{kms.arn}"):
        config = _config(tmp_path / "referee.yaml", registry, reference)
        loaded = load_config(config)
        [key] = loaded.verifiers[0].params.keys
        assert key.source == reference and key.kind == "ecdsa-secp256r1"
        verify = ("verify", "--config", str(config), "--output", "json")
        code, out, _ = run_cli(capsys, *verify, f"{registry.host}/{REPO}:v1")
        [item] = json.loads(out)
        assert code == 0 and item["value"]["allowed"], item
        assert item["value"]["artifacts"][0]["reason"] == f"signature verified with key {key.fingerprint[:19]}"
        code, out, _ = run_cli(capsys, *verify, f"{registry.host}/{REPO}:v2")
        assert code == 1


def test_kms_problems_are_configuration_errors(kms: Kms, registry: RegistryProcess, tmp_path: Path) -> None:
    cases = {
        "awskms:///alias/does-not-exist": "KMS GetPublicKey failed: NotFoundException",
        f"awskms:///{kms.encryption_key}": "the key's usage is ENCRYPT_DECRYPT, not SIGN_VERIFY",
        "awskms://": "expected awskms://[endpoint]/<key id, key ARN or alias/name>",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1": (
            "gcpkms keys are not fetched by this build; export it with `cosign public-key --key gcpkms://projects/p/"
        ),
        "azurekms://vault.vault.azure.net/key": "azurekms keys are not fetched by this build",
        "hashivault://release": "hashivault keys are not fetched by this build",
    }
    for reference, expected in cases.items():
        with pytest.raises(ConfigError) as exc:
            load_config(_config(tmp_path / "referee.yaml", registry, reference))
        [problem] = exc.value.problems
        assert problem.startswith(f"verifiers[0].keys[0]: {reference}: "), problem
        assert expected in problem, problem
