"""Referee benchmark (see README.md)."""
