"""Shared bench infrastructure: registry content, processes (Referee, the no-op provider, the throttling proxy,
redis), the Gatekeeper-like client and load generator, metrics snapshots and the results table."""
