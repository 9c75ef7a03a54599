"""Fixtures of the reliability suite (docs/reliability.md): PKI, a cosign key, and ``referee serve`` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.conftest import public_pem
from tests.support.referee import Pki, RefereeProcess, write_config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def rel_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("rel-pki"))


@pytest.fixture(scope="session")
def cosign_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("rel-keys") / "cosign.pub"
    path.write_bytes(public_pem(key))
    return key, path


Launcher = Callable[..., RefereeProcess]


def _launcher(directory: Path) -> Iterator[Launcher]:
    started: list[RefereeProcess] = []

    def launch(config: dict[str, Any], name: str = "referee", log_level: str = "info") -> RefereeProcess:
        home = directory / f"{name}-home"
        home.mkdir(exist_ok=True)
        process = RefereeProcess(
            write_config(directory / f"{name}.yaml", config), directory / f"{name}.log", home, log_level=log_level
        )
        started.append(process)
        process.start()
        return process

    yield launch
    for process in started:
        process.stop()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Start ``referee serve`` processes (stopped at teardown)."""
    yield from _launcher(tmp_path)


@pytest.fixture(scope="module")
def launch_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    yield from _launcher(tmp_path_factory.mktemp("referee"))
