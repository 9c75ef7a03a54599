"""Build registry content with exact bytes and push it with raw, synchronous HTTP.

Everything here uses ``http.client`` with an explicit ``ssl.SSLContext`` (an ``https`` URL without one is an
error): nothing reads ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE`` or ``~/.docker/config.json``. Digests are always
computed from the bytes sent, never from re-serialised JSON. For fixtures and test set-up only (blocking I/O).

``auth`` arguments accept:

* ``None`` — anonymous;
* ``("basic", user, password)`` — ``Authorization: Basic`` on every request;
* ``("bearer", token)`` — ``Authorization: Bearer`` on every request;
* a callable ``(www_authenticate_value) -> authorization_header_value`` called on a 401 (the request is
  then retried once). :class:`BearerFlow` is such a callable performing the distribution token dance with a
  ``pull,push`` scope; it caches the last header in ``.last_header`` and reuses it first.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import re
import ssl
import tarfile
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Literal, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

__all__ = [
    "ACCEPT_ALL_MANIFESTS",
    "COSIGN_CONFIG_MEDIA_TYPE",
    "COSIGN_SIGNATURE_ANNOTATION",
    "COSIGN_SIMPLESIGNING_MEDIA_TYPE",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_CONFIG_DATA",
    "EMPTY_DIGEST",
    "EMPTY_MEDIA_TYPE",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "Auth",
    "BearerFlow",
    "CosignSignature",
    "HTTPResult",
    "ManifestDigest",
    "RegistryHTTPError",
    "RegistryRequester",
    "SigningKey",
    "VerifyingKey",
    "cosign_payload",
    "cosign_sign_legacy",
    "cosign_sign_payload",
    "cosign_signature_tag",
    "cosign_verify_payload",
    "descriptor",
    "fallback_tag",
    "fetch_token",
    "get_blob",
    "get_manifest",
    "http_request",
    "make_artifact_manifest",
    "make_image",
    "make_index",
    "parse_www_authenticate",
    "push_artifact",
    "push_blob",
    "push_fallback_index",
    "push_image",
    "push_manifest",
    "referrer_descriptor",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG_DATA = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
COSIGN_SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_CONFIG_MEDIA_TYPE = OCI_CONFIG
ACCEPT_ALL_MANIFESTS = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

Auth: TypeAlias = tuple[Literal["basic"], str, str] | tuple[Literal["bearer"], str] | Callable[[str], str] | None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"mediaType", "digest", "size"[, "annotations"]}`` for ``data``."""
    desc: dict[str, Any] = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        desc["annotations"] = dict(annotations)
    return desc


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------------


@dataclass
class HTTPResult:
    status: int
    headers: Message
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        return json.loads(self.body)


class RegistryHTTPError(RuntimeError):
    def __init__(self, what: str, result: HTTPResult) -> None:
        super().__init__(f"{what}: HTTP {result.status} from {result.url}: {result.body[:500]!r}")
        self.result = result
        self.status = result.status


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    ssl_ctx: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> HTTPResult:
    """One HTTP request, no redirects followed, no proxies, no environment CA lookup."""
    parts = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        if ssl_ctx is None:
            raise ValueError(f"https URL {url} needs an explicit ssl_ctx (environment CA variables are not used)")
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, timeout=timeout, context=ssl_ctx)
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    else:
        raise ValueError(f"unsupported URL scheme in {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        conn.request(method, target, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return HTTPResult(resp.status, resp.headers, data, url)
    finally:
        conn.close()


_AUTH_PARAM_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_www_authenticate(value: str) -> tuple[str, dict[str, str]]:
    """``'Bearer realm="x",service="y",scope="a b"'`` -> ``("bearer", {"realm": "x", ...})``."""
    scheme, _, rest = value.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3))
        for m in _AUTH_PARAM_RE.finditer(rest)
    }
    return scheme.lower(), params


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def fetch_token(
    realm: str,
    *,
    service: str | None = None,
    scopes: Sequence[str] = (),
    username: str | None = None,
    password: str | None = None,
    ssl_ctx: ssl.SSLContext | None = None,
) -> str:
    """``GET <realm>?service=&scope=…`` (Basic credentials if given) -> the token string."""
    query: list[tuple[str, str]] = []
    if service:
        query.append(("service", service))
    query.extend(("scope", s) for s in scopes)
    sep = "&" if "?" in realm else "?"
    url = realm + (sep + urllib.parse.urlencode(query) if query else "")
    headers = {"Authorization": _basic(username, password or "")} if username is not None else {}
    result = http_request("GET", url, headers=headers, ssl_ctx=ssl_ctx)
    if result.status != 200:
        raise RegistryHTTPError("token request", result)
    data = result.json()
    token = data.get("token") or data.get("access_token")
    if not token:
        raise RegistryHTTPError("token response without token", result)
    return str(token)


class BearerFlow:
    """Auth callable for :data:`Auth`: answers a 401 challenge.

    ``Bearer`` challenge -> fetch a token from the realm with the challenge's ``service`` and its
    repository scopes rewritten to ``actions`` (default ``pull,push``), Basic credentials if given.
    ``Basic`` challenge -> Basic credentials. ``tokens_fetched`` counts token requests.
    """

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        actions: str = "pull,push",
        ssl_ctx: ssl.SSLContext | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.actions = actions
        self.ssl_ctx = ssl_ctx
        self.last_header: str | None = None
        self.tokens_fetched = 0

    def __call__(self, challenge: str) -> str:
        scheme, params = parse_www_authenticate(challenge)
        if scheme == "basic":
            if self.username is None:
                raise ValueError("Basic challenge but no credentials")
            self.last_header = _basic(self.username, self.password or "")
            return self.last_header
        if scheme != "bearer" or "realm" not in params:
            raise ValueError(f"unsupported challenge {challenge!r}")
        scopes = []
        for scope in params.get("scope", "").split(" "):
            if not scope:
                continue
            kind, _, rest = scope.partition(":")
            name = rest.rsplit(":", 1)[0] if rest.count(":") >= 1 else rest
            scopes.append(f"{kind}:{name}:{self.actions}" if kind == "repository" else scope)
        token = fetch_token(
            params["realm"],
            service=params.get("service"),
            scopes=scopes,
            username=self.username,
            password=self.password,
            ssl_ctx=self.ssl_ctx,
        )
        self.tokens_fetched += 1
        self.last_header = f"Bearer {token}"
        return self.last_header


class RegistryRequester:
    """Requests against one registry base URL with :data:`Auth` handling (one retry after a 401)."""

    def __init__(self, base_url: str, auth: Auth = None, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.ssl_ctx = ssl_ctx

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return urllib.parse.urljoin(self.base_url + "/", path_or_url)

    def _static_header(self) -> str | None:
        auth = self.auth
        if auth is None:
            return None
        if isinstance(auth, tuple):
            if auth[0] == "basic" and len(auth) == 3:
                return _basic(auth[1], auth[2])
            if auth[0] == "bearer" and len(auth) == 2:
                return f"Bearer {auth[1]}"
            raise ValueError(f"bad auth tuple {auth!r}")
        cached = getattr(auth, "last_header", None)
        return cached if isinstance(cached, str) else None

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTTPResult:
        url = self.url(path_or_url)
        hdrs = dict(headers or {})
        authz = self._static_header()
        if authz:
            hdrs["Authorization"] = authz
        result = http_request(method, url, body=body, headers=hdrs, ssl_ctx=self.ssl_ctx)
        challenge = result.header("WWW-Authenticate")
        if result.status == 401 and callable(self.auth) and challenge:
            hdrs["Authorization"] = self.auth(challenge)
            result = http_request(method, url, body=body, headers=hdrs, ssl_ctx=self.ssl_ctx)
        return result


# --------------------------------------------------------------------------------------------------------
# push / pull primitives
# --------------------------------------------------------------------------------------------------------


class ManifestDigest(str):
    """The pushed manifest's digest (a ``str``) plus what the registry answered.

    ``oci_subject`` is the ``OCI-Subject`` response header (``None`` when absent: distribution 2.8.2 never
    sends it), ``computed`` the sha256 of the bytes sent, ``headers``/``status`` the raw response.
    """

    oci_subject: str | None
    computed: str
    status: int
    headers: Message
    size: int
    media_type: str
    location: str | None

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": str(self), "size": self.size}


def push_blob(
    base_url: str,
    repo: str,
    data: bytes,
    auth: Auth = None,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    media_type: str = "application/octet-stream",
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST an upload session then PUT the data with ``?digest=``; returns the blob descriptor."""
    client = RegistryRequester(base_url, auth, ssl_ctx)
    digest = sha256_digest(data)
    start = client.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    if start.status != 202:
        raise RegistryHTTPError(f"start blob upload in {repo}", start)
    location = start.header("Location")
    if not location:
        raise RegistryHTTPError("blob upload without Location", start)
    upload_url = urllib.parse.urljoin(client.url(f"/v2/{repo}/blobs/uploads/"), location)
    parts = urllib.parse.urlsplit(upload_url)
    query = [*urllib.parse.parse_qsl(parts.query, keep_blank_values=True), ("digest", digest)]
    put_url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    done = client.request(
        "PUT",
        put_url,
        body=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
    )
    if done.status != 201:
        raise RegistryHTTPError(f"complete blob upload {digest} in {repo}", done)
    served = done.header("Docker-Content-Digest")
    if served and served != digest:
        raise RegistryHTTPError(f"registry stored blob as {served}, expected {digest}", done)
    return descriptor(media_type, data, annotations)


def push_manifest(
    base_url: str,
    repo: str,
    reference: str,
    body_bytes: bytes,
    media_type: str,
    auth: Auth = None,
    ssl_ctx: ssl.SSLContext | None = None,
) -> ManifestDigest:
    """PUT ``body_bytes`` at ``/v2/<repo>/manifests/<reference>``; 201 required.

    Returns the ``Docker-Content-Digest`` (sha256 of the bytes when absent) as a :class:`ManifestDigest`
    carrying ``oci_subject``.
    """
    client = RegistryRequester(base_url, auth, ssl_ctx)
    result = client.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", body=body_bytes, headers={"Content-Type": media_type}
    )
    if result.status != 201:
        raise RegistryHTTPError(f"push manifest {repo}:{reference}", result)
    computed = sha256_digest(body_bytes)
    digest = ManifestDigest(result.header("Docker-Content-Digest") or computed)
    digest.oci_subject = result.header("OCI-Subject")
    digest.computed = computed
    digest.status = result.status
    digest.headers = result.headers
    digest.size = len(body_bytes)
    digest.media_type = media_type
    digest.location = result.header("Location")
    return digest


def get_manifest(
    base_url: str,
    repo: str,
    reference: str,
    auth: Auth = None,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    accept: str = ACCEPT_ALL_MANIFESTS,
    method: str = "GET",
) -> HTTPResult:
    """GET (or HEAD) a manifest; any status is returned, the caller checks it."""
    client = RegistryRequester(base_url, auth, ssl_ctx)
    return client.request(method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})


def get_blob(
    base_url: str, repo: str, digest: str, auth: Auth = None, ssl_ctx: ssl.SSLContext | None = None
) -> HTTPResult:
    client = RegistryRequester(base_url, auth, ssl_ctx)
    return client.request("GET", f"/v2/{repo}/blobs/{digest}")


# --------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------


def _deterministic_tar_gz(files: Iterable[tuple[str, bytes]]) -> tuple[bytes, bytes]:
    """(gzip bytes, uncompressed tar bytes), byte-stable across runs."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as zipped:
        zipped.write(tar_bytes)
    return gz.getvalue(), tar_bytes


def make_image(
    seed: str, *, layers: int = 1, annotations: Mapping[str, str] | None = None, architecture: str = "amd64"
) -> dict[str, Any]:
    """A small deterministic OCI image derived from ``seed``.

    Returns ``{"config": bytes, "layers": [bytes], "manifest": bytes, "digest": "sha256:…",
    "media_type": OCI manifest, "size": int, "descriptor": {...}, "config_descriptor": {...},
    "layer_descriptors": [{...}], "diff_ids": [...]}``.
    """
    layer_blobs: list[bytes] = []
    diff_ids: list[str] = []
    for i in range(layers):
        noise = hashlib.sha512(f"{seed}/{i}".encode()).hexdigest().encode()
        gz, tar_bytes = _deterministic_tar_gz(
            [(f"referee/{i}.txt", noise + b"\n"), (f"referee/{i}.seed", seed.encode())]
        )
        layer_blobs.append(gz)
        diff_ids.append(sha256_digest(tar_bytes))
    created = "2024-01-01T00:00:00Z"
    config_obj = {
        "created": created,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.referee.test.seed": seed},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": f"referee test layer {i}"} for i in range(layers)],
    }
    config = _dumps(config_obj)
    config_desc = descriptor(OCI_CONFIG, config)
    layer_descs = [descriptor(OCI_LAYER_GZIP, blob) for blob in layer_blobs]
    manifest_obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    if annotations:
        manifest_obj["annotations"] = dict(annotations)
    manifest = _dumps(manifest_obj)
    return {
        "config": config,
        "layers": layer_blobs,
        "manifest": manifest,
        "digest": sha256_digest(manifest),
        "media_type": OCI_MANIFEST,
        "size": len(manifest),
        "descriptor": descriptor(OCI_MANIFEST, manifest),
        "config_descriptor": config_desc,
        "layer_descriptors": layer_descs,
        "diff_ids": diff_ids,
    }


def make_index(
    entries: Sequence[tuple[Mapping[str, Any], Mapping[str, str] | None]],
    *,
    annotations: Mapping[str, str] | None = None,
) -> tuple[bytes, str]:
    """OCI index over ``(image from make_image, platform or None)`` pairs -> ``(bytes, digest)``."""
    manifests = []
    for image, platform in entries:
        desc = dict(image["descriptor"])
        if platform:
            desc["platform"] = dict(platform)
        manifests.append(desc)
    obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    if annotations:
        obj["annotations"] = dict(annotations)
    body = _dumps(obj)
    return body, sha256_digest(body)


def push_image(
    base_url: str,
    repo: str,
    tag: str | None,
    image: Mapping[str, Any],
    auth: Auth = None,
    ssl_ctx: ssl.SSLContext | None = None,
) -> ManifestDigest:
    """Push config, layers, then the manifest at ``tag`` (by digest when ``tag`` is None)."""
    push_blob(base_url, repo, image["config"], auth, ssl_ctx)
    for layer in image["layers"]:
        push_blob(base_url, repo, layer, auth, ssl_ctx)
    reference = tag or image["digest"]
    return push_manifest(base_url, repo, reference, image["manifest"], image["media_type"], auth, ssl_ctx)


# --------------------------------------------------------------------------------------------------------
# artifacts and referrers
# --------------------------------------------------------------------------------------------------------


def make_artifact_manifest(
    subject_desc: Mapping[str, Any] | None,
    artifact_type: str,
    layers: Sequence[tuple[str, bytes, Mapping[str, str] | None]],
    annotations: Mapping[str, str] | None = None,
    config_media_type: str | None = None,
    *,
    form: Literal["oci-1.1", "oci-1.0"] = "oci-1.1",
    config_bytes: bytes | None = None,
) -> tuple[bytes, dict[str, bytes]]:
    """An artifact manifest and its blobs (``{digest: bytes}``, config first).

    ``form="oci-1.1"``: ``artifactType`` set; config = the empty descriptor (``{}``,
    ``application/vnd.oci.empty.v1+json``) unless ``config_media_type`` is given.
    ``form="oci-1.0"``: no ``artifactType``; ``config.mediaType`` = ``config_media_type or artifact_type``
    (Notation's OCI 1.0 shape). ``subject_desc`` (``mediaType``, ``digest``, ``size``) may be None.
    """
    if form == "oci-1.1":
        cfg_type = config_media_type or EMPTY_MEDIA_TYPE
    elif form == "oci-1.0":
        cfg_type = config_media_type or artifact_type
    else:
        raise ValueError(f"unknown form {form!r}")
    cfg = config_bytes if config_bytes is not None else EMPTY_CONFIG_DATA
    blobs: dict[str, bytes] = {sha256_digest(cfg): cfg}
    layer_descs = []
    for media_type, data, layer_annotations in layers:
        layer_descs.append(descriptor(media_type, data, layer_annotations))
        blobs[sha256_digest(data)] = data
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if form == "oci-1.1":
        manifest["artifactType"] = artifact_type
    manifest["config"] = descriptor(cfg_type, cfg)
    manifest["layers"] = layer_descs
    if subject_desc is not None:
        manifest["subject"] = {k: subject_desc[k] for k in ("mediaType", "digest", "size") if k in subject_desc}
    if annotations:
        manifest["annotations"] = dict(annotations)
    return _dumps(manifest), blobs


def push_artifact(
    base_url: str,
    repo: str,
    manifest_bytes: bytes,
    blobs: Mapping[str, bytes],
    auth: Auth = None,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    reference: str | None = None,
    media_type: str = OCI_MANIFEST,
) -> ManifestDigest:
    """Push ``blobs`` then the manifest (by its digest unless ``reference`` is given)."""
    for data in blobs.values():
        push_blob(base_url, repo, data, auth, ssl_ctx)
    ref = reference or sha256_digest(manifest_bytes)
    return push_manifest(base_url, repo, ref, manifest_bytes, media_type, auth, ssl_ctx)


def referrer_descriptor(manifest_bytes: bytes, media_type: str | None = None) -> dict[str, Any]:
    """The referrers-list descriptor of a manifest/index (distribution-spec "Listing Referrers").

    ``artifactType`` = the manifest's, else its ``config.mediaType``; omitted for an index without one;
    ``annotations`` = the manifest's annotations (omitted when none).
    """
    obj = json.loads(manifest_bytes)
    mt = obj.get("mediaType") or media_type or OCI_MANIFEST
    desc: dict[str, Any] = {"mediaType": mt, "digest": sha256_digest(manifest_bytes), "size": len(manifest_bytes)}
    artifact_type = obj.get("artifactType")
    if not artifact_type and "manifests" not in obj:
        artifact_type = (obj.get("config") or {}).get("mediaType")
    if artifact_type:
        desc["artifactType"] = artifact_type
    if obj.get("annotations"):
        desc["annotations"] = dict(obj["annotations"])
    return desc


def fallback_tag(digest: str) -> str:
    """Referrers tag schema: ``<alg>-<ref>`` with alg ≤ 32 and ref ≤ 64 characters, invalid chars -> ``-``."""
    alg, _, ref = digest.partition(":")
    return re.sub(r"[^a-zA-Z0-9._-]", "-", f"{alg[:32]}-{ref[:64]}")


def push_fallback_index(
    base_url: str,
    repo: str,
    subject_digest: str,
    descriptors: Sequence[Mapping[str, Any] | bytes],
    auth: Auth = None,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    merge: bool = True,
) -> ManifestDigest:
    """Write the ``sha256-<hex>`` referrers index for ``subject_digest``.

    ``descriptors`` are descriptor dicts or raw manifest bytes (turned into descriptors with
    :func:`referrer_descriptor`). With ``merge`` an existing valid index is read first: its entries are kept,
    entries with the same digest are replaced, new ones appended.
    """
    tag = fallback_tag(subject_digest)
    new = [referrer_descriptor(d) if isinstance(d, bytes) else dict(d) for d in descriptors]
    entries: list[dict[str, Any]] = []
    if merge:
        existing = get_manifest(base_url, repo, tag, auth, ssl_ctx, accept=OCI_INDEX)
        if existing.status == 200:
            try:
                obj = existing.json()
            except ValueError:
                obj = None
            if isinstance(obj, dict) and isinstance(obj.get("manifests"), list):
                entries = [dict(m) for m in obj["manifests"] if isinstance(m, dict)]
        elif existing.status != 404:
            raise RegistryHTTPError(f"read fallback index {repo}:{tag}", existing)
    new_digests = {d["digest"] for d in new}
    entries = [e for e in entries if e.get("digest") not in new_digests] + new
    body = _dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return push_manifest(base_url, repo, tag, body, OCI_INDEX, auth, ssl_ctx)


# --------------------------------------------------------------------------------------------------------
# cosign legacy signatures
# --------------------------------------------------------------------------------------------------------

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def cosign_signature_tag(image_digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>.sig``."""
    alg, _, ref = image_digest.partition(":")
    return f"{alg}-{ref}.sig"


def cosign_payload(docker_reference: str, image_digest: str, optional: Mapping[str, Any] | None = None) -> bytes:
    """The simple-signing payload exactly as cosign serialises it (compact JSON, this key order)."""
    return _dumps(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": image_digest},
                "type": "cosign container image signature",
            },
            "optional": dict(optional) if optional is not None else None,
        }
    )


def _ec_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    return {"secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}.get(curve.name, hashes.SHA256())


def cosign_sign_payload(private_key: SigningKey, payload: bytes) -> str:
    """base64(signature): ECDSA DER (SHA-256 for P-256, SHA-384 for P-384, SHA-512 for P-521),
    RSA PKCS#1 v1.5 SHA-256, Ed25519 plain."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        sig = private_key.sign(payload, ec.ECDSA(_ec_hash(private_key.curve)))
    elif isinstance(private_key, rsa.RSAPrivateKey):
        sig = private_key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        sig = private_key.sign(payload)
    else:
        raise TypeError(f"unsupported key type {type(private_key).__name__}")
    return base64.b64encode(sig).decode()


def cosign_verify_payload(public_key: VerifyingKey, payload: bytes, signature_b64: str) -> bool:
    """Counterpart of :func:`cosign_sign_payload` (for tests of the helpers themselves)."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(sig, payload, ec.ECDSA(_ec_hash(public_key.curve)))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(sig, payload, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(sig, payload)
        else:
            raise TypeError(f"unsupported key type {type(public_key).__name__}")
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class CosignSignature:
    tag: str
    manifest_digest: ManifestDigest
    manifest: bytes
    payload: bytes
    signed_payload: bytes
    signature_b64: str
    layer: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)


def cosign_sign_legacy(
    base_url: str,
    repo: str,
    image_digest: str,
    private_key: SigningKey,
    auth: Auth = None,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    docker_reference: str | None = None,
    payload_override: bytes | None = None,
    digest_in_payload: str | None = None,
    optional: Mapping[str, Any] | None = None,
    extra_annotations: Mapping[str, str] | None = None,
    append: bool = False,
) -> CosignSignature:
    """Write a cosign legacy signature at tag ``sha256-<hex>.sig`` as ``cosign sign --key`` does.

    The signed payload names ``digest_in_payload or image_digest`` and ``docker_reference`` (default
    ``<host:port>/<repo>`` from ``base_url``); ``payload_override`` replaces the attached blob after signing
    (tampered-payload case). With ``append`` the existing ``.sig`` manifest's layers are kept and the new
    signature becomes one more layer.
    """
    host = urllib.parse.urlsplit(base_url).netloc
    signed_payload = cosign_payload(docker_reference or f"{host}/{repo}", digest_in_payload or image_digest, optional)
    signature_b64 = cosign_sign_payload(private_key, signed_payload)
    payload = payload_override if payload_override is not None else signed_payload
    layer_annotations = {COSIGN_SIGNATURE_ANNOTATION: signature_b64, **(extra_annotations or {})}
    layer = {
        "mediaType": COSIGN_SIMPLESIGNING_MEDIA_TYPE,
        "size": len(payload),
        "digest": sha256_digest(payload),
        "annotations": layer_annotations,
    }
    tag = cosign_signature_tag(image_digest)
    layers: list[dict[str, Any]] = []
    if append:
        existing = get_manifest(base_url, repo, tag, auth, ssl_ctx, accept=f"{OCI_MANIFEST}, {DOCKER_MANIFEST}")
        if existing.status == 200:
            layers = [dict(x) for x in existing.json().get("layers", [])]
        elif existing.status != 404:
            raise RegistryHTTPError(f"read {repo}:{tag}", existing)
    layers.append(layer)
    push_blob(base_url, repo, payload, auth, ssl_ctx)
    epoch = "0001-01-01T00:00:00Z"
    config = _dumps(
        {
            "architecture": "",
            "created": epoch,
            "history": [{"created": epoch}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
            "config": {},
        }
    )
    push_blob(base_url, repo, config, auth, ssl_ctx)
    manifest = _dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": COSIGN_CONFIG_MEDIA_TYPE, "size": len(config), "digest": sha256_digest(config)},
            "layers": layers,
        }
    )
    digest = push_manifest(base_url, repo, tag, manifest, OCI_MANIFEST, auth, ssl_ctx)
    return CosignSignature(
        tag=tag,
        manifest_digest=digest,
        manifest=manifest,
        payload=payload,
        signed_payload=signed_payload,
        signature_b64=signature_b64,
        layer=layer,
        layers=layers,
    )
