"""Where the conformance vectors are: ``tests/vectors``, a verbatim copy of ``../shared/vectors`` (each folder keeps
its README with sources, licences and expected verdicts), so the suite runs from any clone."""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
