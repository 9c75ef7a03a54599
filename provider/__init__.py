"""Referee: a Gatekeeper external-data provider that verifies OCI supply-chain evidence."""

__version__ = "0.1.0"
