"""Sigstore trust material and the offline checks shared by the ``cosign``, ``sigstore-bundle`` and ``attestation``
verifiers, one concern per module.

Hand-written with ``cryptography``, ``rfc8785`` and ``rfc3161-client`` (sigstore-python is used only for whole
certificate-based bundles, in :mod:`provider.verifiers.sigstore_bundle`). Nothing here reads the network or the wall
clock: every time comes from the evidence or the caller.

* :mod:`.common` — :class:`~.common.Rejected`, base64, time format, JSON paths
* :mod:`.signatures` — signature verification with Sigstore's key types
* :mod:`.trust` — ``trusted_root.json`` and PEM trust material
* :mod:`.fulcio` — certificates, identities (SAN + OIDC issuer) and chains to a Fulcio CA at a verified time
* :mod:`.sct` — embedded SCTs
* :mod:`.rekor` — log entries, signed entry timestamps, inclusion proofs, checkpoints
* :mod:`.binding` — a log entry body bound to the signature and signer
* :mod:`.timestamps` — RFC 3161 timestamps
* :mod:`.dsse` — DSSE envelopes and in-toto Statements
* :mod:`.bundle` — a Sigstore bundle's verification material
* :mod:`.evidence` — one signature and its evidence (from cosign annotations or a bundle)
* :mod:`.policy` — who may sign what, and the order the checks run in
"""
