"""Public keys held in a KMS, named the way cosign names them (``--key awskms://…``), fetched once at load.

Only the public half is ever read, once, while the configuration is parsed (never on the request path); a key
that cannot be fetched is a configuration problem, so a reload keeps the last good configuration. The clients are
optional extras (``pip install referee[kms-aws]``) and use their SDK's own credential chain (IRSA, instance
roles, environment), which Referee never logs.

* ``awskms://[endpoint]/<key id | key ARN | alias/name | alias ARN>`` — AWS KMS ``GetPublicKey`` (boto3). The
  region comes from an ARN, else from the SDK's configuration (``AWS_DEFAULT_REGION``); ``endpoint`` (``host[:port]``,
  HTTPS) or the SDK's ``AWS_ENDPOINT_URL_KMS`` overrides the service endpoint.
* ``gcpkms://``, ``azurekms://``, ``hashivault://`` — recognised but not fetched by this build: export the key
  with ``cosign public-key --key <uri> > key.pub`` and configure the file (docs/configuration.md, "Keys in a KMS").
"""

from __future__ import annotations

from typing import Any

SCHEMES = ("awskms://", "gcpkms://", "azurekms://", "hashivault://")
EXPORT_HINT = "export it with `cosign public-key --key {uri} > key.pub` and configure that file"


def is_kms_reference(value: str) -> bool:
    return value.startswith(SCHEMES)


def fetch_public_key(uri: str) -> tuple[bytes, str]:
    """``(DER SubjectPublicKeyInfo, source)`` for a KMS key reference; ValueError with a user-facing reason."""
    if uri.startswith("awskms://"):
        return _aws(uri), uri
    scheme = uri.split("://", 1)[0]
    raise ValueError(f"{scheme} keys are not fetched by this build; " + EXPORT_HINT.format(uri=uri))


def _aws(uri: str) -> bytes:
    rest = uri.removeprefix("awskms://")
    endpoint, _, key_id = rest.partition("/")
    if not key_id:
        raise ValueError("expected awskms://[endpoint]/<key id, key ARN or alias/name>")
    try:
        # optional extra, imported only when an awskms:// key is configured
        import boto3  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import botocore.exceptions  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ValueError(
            "awskms:// keys need boto3 (pip install 'referee[kms-aws]'); " + EXPORT_HINT.format(uri=uri)
        ) from None
    options: dict[str, Any] = {}
    if key_id.startswith("arn:"):
        parts = key_id.split(":")
        if len(parts) < 6 or not parts[3]:
            raise ValueError(f"{key_id!r} is not a KMS key or alias ARN")
        options["region_name"] = parts[3]
    if endpoint:
        options["endpoint_url"] = f"https://{endpoint}"
    try:
        client = boto3.client("kms", **options)
        answer = client.get_public_key(KeyId=key_id)
    except botocore.exceptions.NoRegionError:
        raise ValueError("no AWS region: use a key ARN or set AWS_DEFAULT_REGION") from None
    except botocore.exceptions.NoCredentialsError:
        raise ValueError("no AWS credentials found (IRSA, instance role or AWS_* environment)") from None
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise ValueError(f"KMS GetPublicKey failed: {error.get('Code', 'error')}: {error.get('Message', '')}") from None
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        raise ValueError(f"KMS GetPublicKey failed: {type(exc).__name__}: {exc}") from None
    if answer.get("KeyUsage") not in (None, "SIGN_VERIFY"):
        raise ValueError(f"the key's usage is {answer.get('KeyUsage')}, not SIGN_VERIFY")
    der = answer.get("PublicKey")
    if not isinstance(der, bytes):
        raise ValueError("KMS GetPublicKey returned no public key")
    return der
