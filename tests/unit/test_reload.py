"""Configuration hot reload (issue #19 items 4, 8, 9): unchanged files are not parsed, parsing happens off the event
loop, a file caught mid-write is not applied, and any failure is a reported problem, never a crash."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from provider.config import MAX_CONFIG_BYTES, Config, load_config
from provider.errors import ConfigError
from provider.server import reload as reload_module
from provider.server.reload import ConfigReloader

GOOD = "registries:\n  allow: ['registry.example/*']\n"
OTHER = "registries:\n  allow: ['registry.example/*', 'other.example/*']\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reloader(path: Path, clock: Clock) -> tuple[ConfigReloader, Config]:
    config = load_config(path)
    return ConfigReloader(str(path), config, max_config_bytes=MAX_CONFIG_BYTES, monotonic=clock), config


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Thread idents of every parse the reloader makes."""
    seen: list[int] = []
    real = reload_module.load_config_bytes

    def counting(*args: Any, **kwargs: Any) -> Config:
        seen.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(reload_module, "load_config_bytes", counting)
    return seen


async def test_unchanged_files_are_not_parsed_and_changes_are_parsed_off_the_event_loop(
    tmp_path: Path, parses: list[int]
) -> None:
    path = tmp_path / "referee.yaml"
    path.write_text(GOOD + "# padding\n" * 50_000)
    clock = Clock()
    reloader, config = _reloader(path, clock)
    for _ in range(5):
        assert await reloader.poll(0.01) is None
        clock.now += 5
    assert parses == []
    path.write_text(OTHER)
    new = await reloader.poll(0.01)
    assert new is not None and new.generation != config.generation
    assert len(parses) == 1 and parses[0] != threading.get_ident()
    assert await reloader.poll(0.01) is None
    # Once a minute the files are read again even if size and mtime look the same, but not re-parsed if equal.
    clock.now += 61
    assert await reloader.poll(0.01) is None
    assert len(parses) == 1


async def test_a_referenced_file_that_changes_is_noticed(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def pem() -> bytes:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    (tmp_path / "ci.pub").write_bytes(pem())
    path = tmp_path / "referee.yaml"
    path.write_text(GOOD + "verifiers:\n  - {name: ci, type: cosign, keys: [ci.pub]}\n")
    reloader, config = _reloader(path, Clock())
    (tmp_path / "ci.pub").write_bytes(pem())
    new = await reloader.poll(0.01)
    assert new is not None and new.generation != config.generation


async def test_a_file_still_being_written_is_not_applied_until_it_settles(tmp_path: Path, parses: list[int]) -> None:
    path = tmp_path / "referee.yaml"
    path.write_text(GOOD)
    reloader, _ = _reloader(path, Clock())

    async def writer() -> None:
        with path.open("w") as fh:
            fh.write("registries:\n")  # valid YAML that would deny everything: the first half of a save
            fh.flush()
            await asyncio.sleep(0.05)
            fh.write("  allow: ['registry.example/*', 'other.example/*']\n")

    task = asyncio.ensure_future(writer())
    await asyncio.sleep(0)
    assert await reloader.poll(0.2) is None, "a file that changed during the settle time must not be applied"
    await task
    assert parses == []
    new = await reloader.poll(0.05)
    assert new is not None and new.registries.allow == ("registry.example/*", "other.example/*")


async def test_failures_are_configuration_errors_and_are_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "referee.yaml"
    path.write_text(GOOD)
    reloader, _ = _reloader(path, Clock())
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        await reloader.poll(0.01)
    assert await reloader.poll(0.01) is None  # the same broken file is not parsed again

    def explode(*args: Any, **kwargs: Any) -> Config:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(reload_module, "load_config_bytes", explode)
    time.sleep(0.01)
    path.write_text(OTHER)
    with pytest.raises(ConfigError) as info:
        await reloader.poll(0.01)
    assert info.value.problems == ["cannot load the configuration: RuntimeError: parser bug"]
