"""Where the shared conformance vectors are: ``../shared/vectors`` beside the repository (as in CI)."""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
