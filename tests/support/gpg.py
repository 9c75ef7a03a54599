"""Debian's ``gpg`` in a temporary GNUPGHOME: keys and OpenPGP signatures made at test time, and ``skopeo``
(``standalone-sign`` / ``standalone-verify``) on the same keyring.

Nothing touches the user's keyring: every call runs with ``GNUPGHOME`` set to a private directory (short, under
``/tmp``, so the agent's socket path fits), and :meth:`GnuPG.close` stops the agent it started. Keys have no
passphrase. ``faked_time`` (``YYYYMMDDThhmmss``) makes keys and signatures in the past with gpg's own
``--faked-system-time``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

GPG = shutil.which("gpg") or "/usr/bin/gpg"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
TIMEOUT = 120


def require_tools() -> None:
    """Fail (never skip) when the Debian tools are missing; ``scripts/setup.sh`` installs them."""
    for tool, package in ((GPG, "gpg"), (SKOPEO, "skopeo"), (shutil.which("gpg-agent"), "gpg-agent")):
        if not tool or not os.access(tool, os.X_OK):
            pytest.fail(f"{package} is not installed; run scripts/setup.sh (apt-get install {package})", pytrace=False)


class GnuPG:
    def __init__(self) -> None:
        require_tools()
        self.home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
        self.home.chmod(0o700)
        self.env = {**os.environ, "GNUPGHOME": str(self.home), "LC_ALL": "C"}
        self.fingerprints: dict[str, str] = {}

    def run(self, *args: str, stdin: bytes | None = None, faked_time: str | None = None) -> bytes:
        command = [GPG, "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""]
        if faked_time:
            command += ["--faked-system-time", faked_time]
        result = subprocess.run(
            [*command, *args], input=stdin, capture_output=True, env=self.env, timeout=TIMEOUT, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    def generate(
        self,
        email: str,
        *,
        algo: str = "ed25519",
        usage: str = "sign",
        expire: str = "2y",
        faked_time: str | None = None,
    ) -> str:
        """A primary key ``Name <email>``; returns its fingerprint (upper-case hex)."""
        self.run(
            "--quick-gen-key", f"{email.split('@')[0].title()} <{email}>", algo, usage, expire, faked_time=faked_time
        )
        fpr = self.fingerprint(email)
        self.fingerprints[email] = fpr
        return fpr

    def fingerprint(self, email: str, *, subkey: bool = False) -> str:
        listing = self.run("--with-colons", "--list-keys", email).decode()
        fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        return fprs[-1] if subkey else fprs[0]

    def add_signing_subkey(self, email: str, *, algo: str = "ed25519", expire: str = "1y") -> str:
        self.run("--quick-add-key", self.fingerprints[email], algo, "sign", expire)
        return self.fingerprint(email, subkey=True)

    def export(self, email: str) -> bytes:
        return self.run("--armor", "--export", email)

    def sign(
        self,
        email: str,
        data: bytes,
        *,
        mode: str = "attached",
        armor: bool = True,
        faked_time: str | None = None,
        sig_expire: str | None = None,
        compress: bool = True,
    ) -> bytes:
        """``mode``: ``attached`` (``--sign``), ``clearsign`` or ``detached`` (``--detach-sign``)."""
        flags = {"attached": "--sign", "clearsign": "--clearsign", "detached": "--detach-sign"}[mode]
        args = ["--local-user", email, flags, "--output", "-"]
        if armor and mode != "clearsign":
            args.insert(0, "--armor")
        if not compress:
            args.insert(0, "--compress-level=0")
        if sig_expire:
            args.insert(0, f"--default-sig-expire={sig_expire}")
        return self.run(*args, stdin=data, faked_time=faked_time)

    def revoke(self, email: str) -> None:
        """Import the revocation certificate gpg stored when it made the key (reason: none given = hard)."""
        fpr = self.fingerprints[email]
        text = (self.home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
        certificate = text.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----")
        self.run("--import", stdin=certificate.encode())

    def export_revoked(self, email: str) -> bytes:
        """The public key as it looks after revocation, made in a copy of the keyring (this one can still sign)."""
        copy = GnuPG.__new__(GnuPG)
        copy.home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
        shutil.copytree(self.home, copy.home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("S.*"))
        copy.env = {**self.env, "GNUPGHOME": str(copy.home)}
        copy.fingerprints = dict(self.fingerprints)
        try:
            copy.revoke(email)
            return copy.export(email)
        finally:
            copy.close()

    @classmethod
    def with_public_keys(cls, keys: list[bytes]) -> GnuPG:
        """A keyring holding only these public keys (what a verifier such as skopeo trusts)."""
        ring = cls()
        for key in keys:
            ring.run("--import", stdin=key)
        return ring

    def skopeo_sign(self, manifest: Path, reference: str, fingerprint: str, output: Path) -> None:
        subprocess.run(
            [SKOPEO, "standalone-sign", "-o", str(output), str(manifest), reference, fingerprint],
            env=self.env,
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )

    def skopeo_verify(self, manifest: Path, reference: str, fingerprint: str, signature: Path) -> tuple[bool, str]:
        result = subprocess.run(
            [SKOPEO, "standalone-verify", str(manifest), reference, fingerprint, str(signature)],
            env=self.env,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        return result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace").strip()

    def close(self) -> None:
        gpgconf = shutil.which("gpgconf")
        if gpgconf:
            subprocess.run([gpgconf, "--kill", "all"], env=self.env, capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.home, ignore_errors=True)
