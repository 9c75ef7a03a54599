"""Binary Authorization inputs shaped as ``gcloud container binauthz policy export`` and ``gcloud container
binauthz attestors describe --format=yaml`` print them (field names and enums from the v1 REST reference)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider.verifiers.pkix import default_key_id

PROJECT = "example-project"

# The policy a new project gets (Binary Authorization's default, with Google's system-image allowlist).
DEFAULT_POLICY: dict[str, Any] = {
    "admissionWhitelistPatterns": [
        {"namePattern": "gcr.io/google_containers/*"},
        {"namePattern": "gcr.io/google-containers/*"},
        {"namePattern": "k8s.gcr.io/**"},
        {"namePattern": "gke.gcr.io/**"},
        {"namePattern": "gcr.io/stackdriver-agents/*"},
    ],
    "defaultAdmissionRule": {"enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG", "evaluationMode": "ALWAYS_ALLOW"},
    "globalPolicyEvaluationMode": "ENABLE",
    "name": f"projects/{PROJECT}/policy",
}

# "Require attestations" as in the attestor quickstarts.
REQUIRE_POLICY: dict[str, Any] = {
    "admissionWhitelistPatterns": [{"namePattern": "gcr.io/google_containers/*"}, {"namePattern": "k8s.gcr.io/**"}],
    "defaultAdmissionRule": {
        "evaluationMode": "REQUIRE_ATTESTATION",
        "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
        "requireAttestationsBy": [f"projects/{PROJECT}/attestors/built-by-ci"],
    },
    "globalPolicyEvaluationMode": "ENABLE",
    "name": f"projects/{PROJECT}/policy",
}

# Cluster-specific rules, a dry-run cluster, a namespace rule and the rule kinds Gatekeeper cannot select.
CLUSTER_POLICY: dict[str, Any] = {
    "admissionWhitelistPatterns": [
        {"namePattern": "registry.example.com/base/**"},
        {"namePattern": "registry.example.com/tools/debug"},
    ],
    "defaultAdmissionRule": {"evaluationMode": "ALWAYS_DENY", "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG"},
    "clusterAdmissionRules": {
        "us-east1-a.prod-cluster": {
            "evaluationMode": "REQUIRE_ATTESTATION",
            "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
            "requireAttestationsBy": [f"projects/{PROJECT}/attestors/built-by-ci", f"projects/{PROJECT}/attestors/qa"],
        },
        "us-central1.staging-cluster": {
            "evaluationMode": "REQUIRE_ATTESTATION",
            "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY",
            "requireAttestationsBy": [f"projects/{PROJECT}/attestors/built-by-ci"],
        },
        "europe-west1-b.dev-cluster": {
            "evaluationMode": "ALWAYS_ALLOW",
            "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
        },
    },
    "kubernetesNamespaceAdmissionRules": {
        "sandbox": {"evaluationMode": "ALWAYS_ALLOW", "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG"}
    },
    "kubernetesServiceAccountAdmissionRules": {
        "payments:deployer": {"evaluationMode": "ALWAYS_DENY", "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG"}
    },
    "globalPolicyEvaluationMode": "DISABLE",
    "name": f"projects/{PROJECT}/policy",
}


def pgp_attestor(name: str, armored: str, fingerprint: str) -> dict[str, Any]:
    return {
        "name": f"projects/{PROJECT}/attestors/{name}",
        "updateTime": "2024-05-01T10:00:00.000000Z",
        "userOwnedGrafeasNote": {
            "noteReference": f"projects/{PROJECT}/notes/{name}",
            "publicKeys": [{"asciiArmoredPgpPublicKey": armored, "id": fingerprint}],
            "delegationServiceAccountEmail": "service-123@gcp-sa-binaryauthorization.iam.gserviceaccount.com",
        },
    }


def pkix_attestor(name: str, key: ec.EllipticCurvePrivateKey, key_id: str | None = None) -> dict[str, Any]:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "name": f"projects/{PROJECT}/attestors/{name}",
        "userOwnedGrafeasNote": {
            "noteReference": f"projects/{PROJECT}/notes/{name}",
            "publicKeys": [
                {
                    "id": key_id or default_key_id(key.public_key()),
                    "pkixPublicKey": {"publicKeyPem": pem.decode(), "signatureAlgorithm": "ECDSA_P256_SHA256"},
                }
            ],
        },
    }
