"""Registry content for the bench: signed images pushed to the real registry before any phase runs.

``app``: real images (``make_image`` + ``push_image``) with a legacy cosign signature each. The other sets are
pushed the cheap way (:class:`CheapSet`): one config blob and one layer blob shared by the whole repository,
manifests that differ only by an annotation (so each has its own digest) PUT by tag, each with its own signed
payload blob and ``.sig`` manifest. A set may name some indices as *bad*: those are signed with a key Referee does
not trust, so a correct Referee denies them (``wrongly allowed`` counts the ones it allowed)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.infra.util import log
from tests.support.content import (
    COSIGN_CONFIG_MEDIA_TYPE,
    COSIGN_SIGNATURE_ANNOTATION,
    COSIGN_SIMPLESIGNING_MEDIA_TYPE,
    OCI_MANIFEST,
    cosign_payload,
    cosign_sign_legacy,
    cosign_sign_payload,
    cosign_signature_tag,
    descriptor,
    make_image,
    push_blob,
    push_image,
    push_manifest,
    sha256_digest,
)
from tests.support.registry import RegistryProcess

APP_REPO = "bench/app"
MEM_REPO = "bench/mem"
LEGACY_REPO = "bench/legacy"
BURST_REPO = "bench/burst"
STORM_REPO = "bench/storm"


@dataclass
class ImageSet:
    """Tags ``<prefix>0…`` in ``repo``; ``bad`` holds the indices signed with the untrusted key."""

    repo: str
    tags: list[str]
    digests: list[str]
    bad: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.tags)

    def keys(self, host: str, *, by_digest: bool = False) -> list[str]:
        if by_digest:
            return [f"{host}/{self.repo}@{d}" for d in self.digests]
        return [f"{host}/{self.repo}:{t}" for t in self.tags]

    def bad_keys(self, host: str, *, by_digest: bool = False) -> set[str]:
        keys = self.keys(host, by_digest=by_digest)
        return {keys[i] for i in self.bad}


@dataclass
class Content:
    sets: dict[str, ImageSet]
    key_file: Path
    seconds: float
    http_requests: int

    def __getitem__(self, name: str) -> ImageSet:
        return self.sets[name]


def _sig_config() -> bytes:
    epoch = "0001-01-01T00:00:00Z"
    return json.dumps(
        {
            "architecture": "",
            "created": epoch,
            "history": [{"created": epoch}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {},
        },
        separators=(",", ":"),
    ).encode()


@dataclass
class CheapSet:
    """Distinct manifests over one shared config blob and one shared layer blob, each with a legacy cosign
    signature whose ``.sig`` manifests share one config blob too."""

    url: str
    host: str
    repo: str
    base: dict[str, Any]
    sig_config_desc: dict[str, Any] = field(default_factory=dict)

    def prepare(self) -> None:
        push_blob(self.url, self.repo, self.base["config"])
        for layer in self.base["layers"]:
            push_blob(self.url, self.repo, layer)
        sig_config = _sig_config()
        push_blob(self.url, self.repo, sig_config)
        self.sig_config_desc = {
            "mediaType": COSIGN_CONFIG_MEDIA_TYPE,
            "size": len(sig_config),
            "digest": sha256_digest(sig_config),
        }

    def push(self, tag: str, key: ec.EllipticCurvePrivateKey) -> str:
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": self.base["config_descriptor"],
                "layers": self.base["layer_descriptors"],
                "annotations": {"org.referee.bench.tag": f"{self.repo}:{tag}"},
            },
            separators=(",", ":"),
        ).encode()
        digest = str(push_manifest(self.url, self.repo, tag, manifest, OCI_MANIFEST))
        payload = cosign_payload(f"{self.host}/{self.repo}", digest)
        signature = cosign_sign_payload(key, payload)
        push_blob(self.url, self.repo, payload)
        layer = descriptor(COSIGN_SIMPLESIGNING_MEDIA_TYPE, payload, {COSIGN_SIGNATURE_ANNOTATION: signature})
        sig_manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.sig_config_desc, "layers": [layer]},
            separators=(",", ":"),
        ).encode()
        push_manifest(self.url, self.repo, cosign_signature_tag(digest), sig_manifest, OCI_MANIFEST)
        return digest


@dataclass(frozen=True)
class SetSpec:
    name: str
    repo: str
    prefix: str
    count: int
    bad_every: int = 0  # every n-th image (n > 0) is signed with the untrusted key


class ContentPusher:
    """Pushes image sets with a thread pool; the trusted key's public half is written to ``key_file``."""

    def __init__(self, registry: RegistryProcess, directory: Path, threads: int) -> None:
        self.registry = registry
        self.threads = threads
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.untrusted = ec.generate_private_key(ec.SECP256R1())
        self.key_file = directory / "cosign.pub"
        self.key_file.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.http_requests = 0

    def push_app(self, pool: ThreadPoolExecutor, count: int) -> ImageSet:
        url = self.registry.url

        def one(index: int) -> str:
            digest = push_image(url, APP_REPO, f"v{index}", make_image(f"{APP_REPO}/{index}"))
            cosign_sign_legacy(url, APP_REPO, digest, self.key)
            return str(digest)

        digests = list(pool.map(one, range(count)))
        # push_image: 2 blobs (POST+PUT each) + manifest; cosign_sign_legacy: 2 blobs + manifest -> 11 per image.
        self.http_requests += count * 11
        return ImageSet(APP_REPO, [f"v{i}" for i in range(count)], digests)

    def push_cheap(self, pool: ThreadPoolExecutor, spec: SetSpec) -> ImageSet:
        cheap = CheapSet(self.registry.url, self.registry.host, spec.repo, make_image(f"{spec.repo}/base"))
        cheap.prepare()
        tags = [f"{spec.prefix}{i}" for i in range(spec.count)]
        bad = frozenset(i for i in range(spec.count) if spec.bad_every and i % spec.bad_every == spec.bad_every - 1)
        digests = list(
            pool.map(lambda i: cheap.push(tags[i], self.untrusted if i in bad else self.key), range(spec.count))
        )
        # manifest + payload blob (POST+PUT) + .sig manifest -> 4 per tag, plus 3 blobs (6 requests) per repository.
        self.http_requests += spec.count * 4 + 6
        return ImageSet(spec.repo, tags, digests, bad)

    def push(self, app_images: int, specs: list[SetSpec]) -> Content:
        started = time.perf_counter()
        sets: dict[str, ImageSet] = {}
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            sets["app"] = self.push_app(pool, app_images)
            log(f"pushed {app_images} signed images to {APP_REPO} ({time.perf_counter() - started:.1f}s)")
            for spec in specs:
                if spec.count <= 0:
                    continue
                sets[spec.name] = self.push_cheap(pool, spec)
                bad = len(sets[spec.name].bad)
                log(
                    f"pushed {spec.count} signed manifests to {spec.repo}"
                    + (f" ({bad} with an untrusted key)" if bad else "")
                    + f" ({time.perf_counter() - started:.1f}s)"
                )
        return Content(sets, self.key_file, time.perf_counter() - started, self.http_requests)
