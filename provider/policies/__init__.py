"""Policies (the ``PolicyEnforcer`` seam and its built-in types)."""
