"""A TUF repository built in the test with python-tuf's Metadata API and served on 127.0.0.1.

``TufRepository`` holds four Ed25519 signers (root, targets, snapshot, timestamp; securesystemslib's
``CryptoSigner``), publishes targets (``publish(name, data)`` bumps targets, snapshot and timestamp and re-signs
them, as a repository's maintainers would) and serves the directory with ``http.server`` on an ephemeral port:
``<url>/1.root.json``, ``timestamp.json``, ``snapshot.json``, ``targets.json`` and ``<url>/targets/<name>``
(``consistent_snapshot: false``). ``tamper(name, data)`` replaces a target's bytes without re-signing anything.
"""

from __future__ import annotations

import functools
import threading
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp

ROLES = ("root", "targets", "snapshot", "timestamp")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class TufRepository:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "targets").mkdir(parents=True, exist_ok=True)
        self.signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
        self.root = Root(expires=expires, consistent_snapshot=False)
        for role, signer in self.signers.items():
            self.root.add_key(signer.public_key, role)
        self.targets = Targets(expires=expires)
        self.snapshot = Snapshot(expires=expires)
        self.timestamp = Timestamp(expires=expires)
        self._write("1.root.json", self.root, "root")
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def root_path(self) -> Path:
        return self.directory / "1.root.json"

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _write(self, name: str, signed: Root | Targets | Snapshot | Timestamp, role: str) -> None:
        metadata = Metadata(signed)
        metadata.sign(self.signers[role])
        metadata.to_file(str(self.directory / name))

    def publish(self, name: str, data: bytes) -> None:
        """Add or replace target ``name`` and publish new targets, snapshot and timestamp metadata."""
        (self.directory / "targets" / name).write_bytes(data)
        self.targets.targets[name] = TargetFile.from_data(name, data)
        self.targets.version += 1
        self.snapshot.meta["targets.json"] = MetaFile(version=self.targets.version)
        self.snapshot.version += 1
        self.timestamp.snapshot_meta = MetaFile(version=self.snapshot.version)
        self.timestamp.version += 1
        self._write("targets.json", self.targets, "targets")
        self._write("snapshot.json", self.snapshot, "snapshot")
        self._write("timestamp.json", self.timestamp, "timestamp")

    def tamper(self, name: str, data: bytes) -> None:
        (self.directory / "targets" / name).write_bytes(data)

    def start(self) -> TufRepository:
        handler = functools.partial(_Quiet, directory=str(self.directory))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, name="tuf-repository", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TufRepository:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
