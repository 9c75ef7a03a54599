"""Figures the reliability suite publishes (docs/reliability.md), collected while the tests run.

A pytest plugin (loaded from ``tests/conftest.py``). Tests record one row per thing they tried through the
``figures`` fixture: ``figures.record("faults", "500 on the image tag", outcome="left out, REGISTRY_UNAVAILABLE",
answered_s=0.31, wrongly_allowed=0)``. With ``--reliability-json=PATH`` every row, and the outcome of every test
under ``tests/reliability/``, is written to ``PATH`` at the end of the session, for
``scripts/reliability_report.py`` to render. Without the option nothing is written and recording costs nothing.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Figures", "figures"]

RELIABILITY_DIR = "tests/reliability/"


class Figures:
    """Rows recorded during a session: ``section -> row name -> fields`` (a row recorded twice is merged, counts
    in ``*_count`` fields added)."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, dict[str, Any]]] = {}
        self.outcomes: dict[str, str] = {}
        self.started = time.time()

    def record(self, section: str, row: str, **fields: Any) -> None:
        existing = self.sections.setdefault(section, {}).setdefault(row, {})
        for name, value in fields.items():
            if name.endswith("_count") and isinstance(existing.get(name), int) and isinstance(value, int):
                existing[name] += value
            else:
                existing[name] = value

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "referee.reliability/v1",
            "generatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "durationSeconds": round(time.time() - self.started, 1),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "system": platform.system()},
            "hypothesisProfile": os.environ.get("REFEREE_HYPOTHESIS_PROFILE", "ci"),
            "sections": self.sections,
            "tests": self.outcomes,
        }


_FIGURES = pytest.StashKey[Figures]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-json",
        default=None,
        help="write the figures recorded by tests/reliability/ to this JSON file (scripts/reliability_report.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = Figures()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Figures:
    return request.config.stash[_FIGURES]


_session_figures: Figures | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _session_figures
    _session_figures = session.config.stash[_FIGURES]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each reliability test's outcome: ``failed`` if any phase failed, else its call phase's outcome."""
    store = _session_figures
    if store is None or not report.nodeid.startswith(RELIABILITY_DIR):
        return
    counts = report.when == "call" or report.outcome != "passed"
    if counts and store.outcomes.get(report.nodeid) in (None, "passed"):
        store.outcomes[report.nodeid] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--reliability-json")
    if not path:
        return
    figures = session.config.stash[_FIGURES]
    Path(path).write_text(json.dumps(figures.to_json(), indent=1, sort_keys=True) + "\n")
