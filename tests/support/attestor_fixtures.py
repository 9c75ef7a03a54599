"""Session fixtures for attestor-style evidence: a GnuPG keyring with keys in every state the tests need.

``keyring`` (a :class:`Keys`) holds secret keys and signs anything at any (faked) time:

* ``alice`` (Ed25519, signs), ``bob`` (Ed25519, never configured: the "wrong key"), ``rsa`` (RSA 3072);
* ``carol``: certification-only primary with an Ed25519 signing subkey;
* ``frank``: a signing subkey that expired a year ago (signatures are made while it was valid);
* ``old``: a primary key that expired a year ago (signatures made while it was valid);
* ``dave``: revoked — ``public["dave"]`` is the exported certificate *with* the revocation, while the keyring
  itself can still sign (the signatures predate the revocation);
* ``erin``: valid, used for signatures that themselves expired (``--default-sig-expire``).

``public[name]`` is the ASCII-armored public key a verifier would configure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.gpg import GnuPG


def gpg_time(delta: dt.timedelta) -> str:
    return (dt.datetime.now(dt.UTC) + delta).strftime("%Y%m%dT%H%M%S")


YEAR = dt.timedelta(days=365)
PAST = {"old": gpg_time(-2.5 * YEAR), "frank": gpg_time(-2.5 * YEAR), "erin": gpg_time(-20 * dt.timedelta(days=1))}


@dataclass
class Keys:
    gpg: GnuPG
    fpr: dict[str, str] = field(default_factory=dict)
    public: dict[str, bytes] = field(default_factory=dict)
    subkey: dict[str, str] = field(default_factory=dict)

    def email(self, name: str) -> str:
        return f"{name}@example.com"

    def sign(self, name: str, data: bytes, **kwargs: object) -> bytes:
        """Sign as ``name`` (at the time that key's valid signatures were made, for the time-travelling keys)."""
        if name in PAST:
            kwargs.setdefault("faked_time", PAST[name])
        if name == "erin":
            kwargs.setdefault("sig_expire", "1d")
        return self.gpg.sign(self.email(name), data, **kwargs)  # type: ignore[arg-type]


def build_keys() -> Keys:
    gpg = GnuPG()
    keys = Keys(gpg)
    three_years_ago = gpg_time(-3 * YEAR)
    for name, kwargs in (
        ("alice", {}),
        ("bob", {}),
        ("rsa", {"algo": "rsa3072"}),
        ("carol", {"usage": "cert"}),
        ("dave", {}),
        ("frank", {"usage": "cert", "expire": "10y", "faked_time": three_years_ago}),
        ("old", {"expire": "2y", "faked_time": three_years_ago}),
        ("erin", {"faked_time": gpg_time(-30 * dt.timedelta(days=1))}),
    ):
        keys.fpr[name] = gpg.generate(keys.email(name), **kwargs)  # type: ignore[arg-type]
    keys.subkey["carol"] = gpg.add_signing_subkey(keys.email("carol"))
    gpg.run("--quick-add-key", keys.fpr["frank"], "ed25519", "sign", "1y", faked_time=three_years_ago)
    keys.subkey["frank"] = gpg.fingerprint(keys.email("frank"), subkey=True)
    for name in keys.fpr:
        keys.public[name] = gpg.export(keys.email(name))
    keys.public["dave"] = gpg.export_revoked(keys.email("dave"))
    return keys


@pytest.fixture(scope="session")
def keyring() -> Iterator[Keys]:
    keys = build_keys()
    yield keys
    keys.gpg.close()
