"""Image references: Docker normalisation, grammar, digests (oci-and-referrers.md §1, §2, §5)."""

from __future__ import annotations

import hashlib

import pytest

from provider.errors import DigestMismatchError, ProviderError, ReferenceInvalidError
from provider.reference import (
    ImageRef,
    compute_digest,
    parse_digest,
    parse_reference,
    referrers_tag,
    verify_digest,
)

HEX64 = "0123456789abcdef" * 4
HEX128 = "fedcba9876543210" * 8
SHA256 = f"sha256:{HEX64}"
SHA512 = f"sha512:{HEX128}"


def _code(exc: ProviderError) -> str:
    return str(exc).split(":", 1)[0]


# -- normalisation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "registry", "repository", "tag", "digest"),
    [
        # single component on Docker Hub gets library/ and :latest
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("library/nginx", "docker.io", "library/nginx", "latest", None),
        # a first component without '.', ':' and not localhost is a Hub namespace
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("a/b/c", "docker.io", "a/b/c", "latest", None),
        # Hub spellings all collapse to docker.io, and library/ is added for a single component
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None),
        ("index.docker.io/team/app:v2", "docker.io", "team/app", "v2", None),
        # host detection: '.', ':' or localhost
        ("ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("registry.example:5000/team/app", "registry.example:5000", "team/app", "latest", None),
        ("myhost:5000/app", "myhost:5000", "app", "latest", None),
        # a non-Hub registry does not get library/
        ("quay.io/nginx", "quay.io", "nginx", "latest", None),
        # separators inside components
        ("ghcr.io/my-org/my_app.v2__x", "ghcr.io", "my-org/my_app.v2__x", "latest", None),
        # digests: no default tag when a digest is present
        (f"nginx@{SHA256}", "docker.io", "library/nginx", None, SHA256),
        (f"ghcr.io/org/app@{SHA512}", "ghcr.io", "org/app", None, SHA512),
        # tag and digest: the digest wins, the tag is kept as information
        (f"localhost:5000/app:v1@{SHA256}", "localhost:5000", "app", "v1", SHA256),
    ],
)
def test_normalisation(value: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(value)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_nginx_full_string() -> None:
    ref = parse_reference("nginx")
    assert str(ref) == "docker.io/library/nginx:latest"
    assert ref.name == "docker.io/library/nginx"


def test_single_component_localhost_is_a_repository_not_a_host() -> None:
    # 'localhost' alone has no '/' after it: it names a Hub image, like docker does
    ref = parse_reference("localhost")
    assert ref.name == "docker.io/library/localhost"


def test_docker_hub_api_host() -> None:
    assert parse_reference("nginx").api_host == "registry-1.docker.io"
    assert parse_reference("ghcr.io/a/b").api_host == "ghcr.io"


def test_digest_wins_over_tag_for_what_is_fetched() -> None:
    ref = parse_reference(f"ghcr.io/org/app:v1@{SHA256}")
    assert ref.reference == SHA256
    assert ref.tag == "v1"
    assert parse_reference("ghcr.io/org/app:v1").reference == "v1"


@pytest.mark.parametrize(
    ("value", "keep_tag", "expected"),
    [
        ("nginx:1", False, f"docker.io/library/nginx@{SHA256}"),
        ("nginx:1", True, f"docker.io/library/nginx:1@{SHA256}"),
        ("localhost:5000/app:v1", False, f"localhost:5000/app@{SHA256}"),
        ("localhost:5000/app:v1", True, f"localhost:5000/app:v1@{SHA256}"),
        ("localhost:5000/app", True, f"localhost:5000/app:latest@{SHA256}"),
    ],
)
def test_pinned(value: str, keep_tag: bool, expected: str) -> None:
    ref = parse_reference(value).with_digest(SHA256)
    assert ref.pinned(keep_tag=keep_tag) == expected
    # a pinned reference parses back to the same subject
    back = parse_reference(expected)
    assert back.name == ref.name
    assert back.digest == SHA256


def test_pinned_digest_only_keep_tag_has_no_tag() -> None:
    ref = parse_reference(f"ghcr.io/org/app@{SHA256}")
    assert ref.pinned(keep_tag=True) == f"ghcr.io/org/app@{SHA256}"


def test_pinned_without_digest_is_an_error() -> None:
    with pytest.raises(ReferenceInvalidError):
        parse_reference("nginx:1").pinned()


def test_with_digest_keeps_everything_else() -> None:
    ref = parse_reference("ghcr.io/org/app:v1")
    pinned = ref.with_digest(SHA256)
    assert pinned == ImageRef("ghcr.io", "org/app", "v1", SHA256)
    assert ref.digest is None  # frozen: the original is unchanged


# -- rejections ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Nginx", id="upper-case-hub-repo"),
        pytest.param("ghcr.io/Org/app", id="upper-case-component"),
        pytest.param("ghcr.io/org/App:v1", id="upper-case-last-component"),
        pytest.param("nginx:" + "a" * 129, id="tag-129-chars"),
        pytest.param("nginx:.hidden", id="tag-leading-dot"),
        pytest.param("nginx:-x", id="tag-leading-dash"),
        pytest.param("nginx:", id="empty-tag"),
        pytest.param("nginx:a+b", id="tag-bad-char"),
        pytest.param("nginx@sha384:" + "a" * 96, id="sha384-unsupported"),
        pytest.param("nginx@md5:" + "a" * 32, id="md5-unsupported"),
        pytest.param("nginx@sha256:" + "a" * 63, id="sha256-short"),
        pytest.param("nginx@sha256:" + "a" * 65, id="sha256-long"),
        pytest.param("nginx@sha256:" + "A" * 64, id="sha256-upper-hex"),
        pytest.param("nginx@sha256:" + "g" * 64, id="sha256-not-hex"),
        pytest.param("nginx@sha512:" + "a" * 64, id="sha512-short"),
        pytest.param("nginx@", id="empty-digest"),
        pytest.param("nginx@sha256", id="digest-without-encoded"),
        pytest.param(" nginx", id="leading-space"),
        pytest.param("nginx ", id="trailing-space"),
        pytest.param("ngi nx", id="inner-space"),
        pytest.param("nginx\n", id="newline"),
        pytest.param("nginx:\t1", id="tab"),
        pytest.param("", id="empty"),
        pytest.param("a" * 600, id="over-long-reference"),
        pytest.param("example.com/" + "a" * 250, id="over-long-name"),
        pytest.param("example.com/", id="empty-path"),
        pytest.param("a//b", id="empty-component"),
        pytest.param("ghcr.io/org/app/", id="trailing-slash"),
        pytest.param("ghcr.io/-app", id="leading-separator"),
        pytest.param("ghcr.io/app-", id="trailing-separator"),
        pytest.param("my_host.example/app", id="underscore-in-host"),
        pytest.param("example.com:/app", id="empty-port"),
    ],
)
def test_rejected_with_reference_invalid(value: str) -> None:
    with pytest.raises(ReferenceInvalidError) as info:
        parse_reference(value)
    assert info.value.code == "REFERENCE_INVALID"
    assert _code(info.value) == "REFERENCE_INVALID"


def test_tag_of_128_chars_is_the_maximum() -> None:
    tag = "a" * 128
    assert parse_reference(f"nginx:{tag}").tag == tag


@pytest.mark.parametrize("tag", ["_x", "v1.2.3", "A-b_c.D", "0"])
def test_valid_tags(tag: str) -> None:
    assert parse_reference(f"ghcr.io/org/app:{tag}").tag == tag


def test_unsupported_algorithm_reason_names_it() -> None:
    with pytest.raises(ReferenceInvalidError, match="sha384"):
        parse_reference("nginx@sha384:" + "a" * 96)


@pytest.mark.parametrize("value", [SHA256, SHA512])
def test_parse_digest_accepts_registered_algorithms(value: str) -> None:
    assert parse_digest(value) == value


@pytest.mark.parametrize(
    "value",
    ["sha256:" + HEX64.upper(), "sha256:" + HEX64[:-1], "sha512:" + HEX64, "blake3:" + HEX64, HEX64, "sha256:"],
)
def test_parse_digest_rejects(value: str) -> None:
    with pytest.raises(ReferenceInvalidError):
        parse_digest(value)


# -- referrers tag schema (§5) -------------------------------------------------------------------------------------


def test_referrers_tag_sha256() -> None:
    assert referrers_tag(SHA256) == f"sha256-{HEX64}"


def test_referrers_tag_sha512_truncates_to_64_hex() -> None:
    tag = referrers_tag(SHA512)
    assert tag == f"sha512-{HEX128[:64]}"
    assert len(tag.split("-", 1)[1]) == 64


def test_referrers_tag_is_a_valid_tag() -> None:
    for digest in (SHA256, SHA512):
        ref = parse_reference(f"ghcr.io/org/app:{referrers_tag(digest)}")
        assert ref.tag == referrers_tag(digest)


# -- digests -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_compute_and_verify_digest(algorithm: str) -> None:
    data = b'{"schemaVersion":2}'
    digest = compute_digest(data, algorithm)
    assert digest == f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    verify_digest(data, digest, "manifest")  # no exception


def test_verify_digest_mismatch() -> None:
    data = b"hello"
    expected = compute_digest(b"hellO")
    with pytest.raises(DigestMismatchError) as info:
        verify_digest(data, expected, "blob x")
    assert info.value.code == "DIGEST_MISMATCH"
    assert str(info.value).startswith("DIGEST_MISMATCH: ")
    assert "blob x" in str(info.value)
    assert expected in str(info.value)


def test_verify_digest_one_byte_changed() -> None:
    data = bytearray(b"x" * 100)
    digest = compute_digest(bytes(data))
    data[50] ^= 1
    with pytest.raises(DigestMismatchError):
        verify_digest(bytes(data), digest, "blob")


def test_verify_digest_unsupported_algorithm_is_a_mismatch() -> None:
    with pytest.raises(DigestMismatchError):
        verify_digest(b"x", "md5:" + hashlib.md5(b"x").hexdigest(), "blob")
