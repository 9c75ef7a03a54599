"""Verifiers (the ``Verifier`` seam and its built-in types, one module per type)."""
