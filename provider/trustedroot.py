"""``referee trusted-root fetch``: a Sigstore ``trusted_root.json`` from a TUF repository, for online clusters.

Referee itself stays offline: verifiers read ``trustedRoot`` from a file, and re-read it when it changes (every
file the configuration names is fingerprinted). This command keeps that file current. It runs sigstore-python's
TUF client (``sigstore._internal.tuf.TrustUpdater``, what ``ClientTrustConfig.from_tuf`` uses; python-tuf's
``ngclient`` underneath): the repository's root metadata is verified from a trusted root (sigstore-python's
embedded one for the public-good instance, ``--root`` for a private deployment), then timestamp, snapshot and
targets, and ``trusted_root.json`` is downloaded only if its length and hashes match the signed targets metadata.
The file is written only when it parses as a trusted root Referee can use, atomically (a temporary file renamed
over the old one), so a verifier never reads half a file and a failed refresh leaves the last good one in place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provider.errors import ConfigError, ProviderError
from provider.verifiers.sigstore.trust import parse_trusted_root

PUBLIC_GOOD = "https://tuf-repo-cdn.sigstore.dev"
MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024


class TrustedRootFetchError(ProviderError):
    """The repository could not be reached or verified, or its trusted root is unusable."""

    code = "TRUSTED_ROOT_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Fetched:
    path: Path
    sha256: str
    changed: bool


def fetch(output: Path, url: str = PUBLIC_GOOD, bootstrap_root: Path | None = None) -> Fetched:
    """Refresh the TUF metadata of ``url`` and write its ``trusted_root.json`` target to ``output``."""
    try:
        from sigstore._internal.tuf import TrustUpdater
        from sigstore.errors import TUFError
    except ImportError as exc:  # pragma: no cover - sigstore is a runtime dependency
        raise TrustedRootFetchError(f"sigstore-python's TUF client is unavailable: {exc}") from None
    if bootstrap_root is not None and not bootstrap_root.is_file():
        raise TrustedRootFetchError(f"--root {bootstrap_root}: not a file")
    try:
        updater = TrustUpdater(url, offline=False, bootstrap_root=bootstrap_root)
        target = Path(updater.get_trusted_root_path())
    except TUFError as exc:
        cause = exc.__cause__ or exc
        raise TrustedRootFetchError(f"{url}: {exc}: {type(cause).__name__}: {cause}") from None
    except (OSError, ValueError) as exc:
        raise TrustedRootFetchError(f"{url}: {type(exc).__name__}: {exc}") from None
    data = target.read_bytes()
    if len(data) > MAX_TRUSTED_ROOT_BYTES:
        raise TrustedRootFetchError(f"{url}: trusted_root.json is larger than {MAX_TRUSTED_ROOT_BYTES} bytes")
    try:
        parse_trusted_root(data)
    except ValueError as exc:
        raise TrustedRootFetchError(f"{url}: trusted_root.json is not usable: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        current = output.read_bytes()
    except OSError:
        current = None
    if current == data:
        return Fetched(output, digest, changed=False)
    _write_atomically(output, data)
    return Fetched(output, digest, changed=True)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".trusted_root.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_url(url: str) -> None:
    if not url.startswith(("https://", "http://")):
        raise ConfigError([f"--tuf-url: {url!r} is not an http(s) URL"])
