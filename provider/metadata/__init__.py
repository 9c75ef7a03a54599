"""Pure evaluation of supply-chain metadata: SBOMs, vulnerability reports and VEX.

Every function here takes already-decoded JSON (``dict``/``list``) and returns typed, immutable results; none
performs I/O, logs or reads configuration, so verifiers of bare referrers and of verified in-toto predicates
share one implementation. Malformed input raises :class:`~provider.metadata.common.MetadataError` with a
human-readable reason.

Modules: :mod:`.common` (errors, RFC 3339 time), :mod:`.purl` (package URLs), :mod:`.versions` (version
ordering and ranges), :mod:`.licenses` (SPDX license expressions), :mod:`.sbom` (SPDX 2.x / CycloneDX),
:mod:`.sarif` (SARIF 2.1.0 and in-toto vulnerability predicates), :mod:`.vex` (OpenVEX), :mod:`.vulnpolicy`
(judging a report: thresholds, deny-list, exceptions, VEX suppression, age).
"""
