"""Referrer stores (the ``ReferrerStore`` seam and its built-in types)."""
