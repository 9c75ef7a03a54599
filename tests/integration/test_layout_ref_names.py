"""``referee verify --layout`` finds tags the way real tools name them in ``index.json``.

``skopeo copy … oci:DIR:name:tag`` writes ``org.opencontainers.image.ref.name`` = ``name:tag``; the layouts here
are written by the real skopeo (Debian's), not by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provider.reference import parse_reference
from provider.stores.oci_layout import OCILayoutStore
from tests.support.content import make_image
from tests.support.referee import write_config, write_layout

REFEREE = Path(sys.executable).parent / "referee"


def _skopeo() -> str:
    found = shutil.which("skopeo")
    if found is None:
        pytest.fail("skopeo is not installed: apt-get install -y --no-install-recommends skopeo", pytrace=False)
    return found


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One layout with three images copied in by skopeo under different ref names."""
    root = tmp_path_factory.mktemp("layouts")
    digests: dict[str, str] = {}
    destination = root / "dst"
    for source_name, names in (
        ("a", ["app:v1", "v3"]),
        ("b", ["team/app:v1"]),
        ("c", ["registry.example/team/app:v2"]),
    ):
        image = make_image(f"layout ref name {source_name}")
        write_layout(
            root / source_name, [(image["manifest"], image["media_type"], "src")], [image["config"], *image["layers"]]
        )
        digests[source_name] = image["digest"]
        for name in names:
            subprocess.run(
                [_skopeo(), "copy", "--quiet", f"oci:{root / source_name}:src", f"oci:{destination}:{name}"],
                check=True,
                capture_output=True,
                timeout=120,
            )
    return destination, digests


def test_skopeo_writes_name_colon_tag(layout: tuple[Path, dict[str, str]]) -> None:
    destination, _ = layout
    index = json.loads((destination / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["app:v1", "v3", "team/app:v1", "registry.example/team/app:v2"]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("registry.example/team/app:v1", "b"),  # team/app:v1 names more of the reference than app:v1
        ("registry.example/other/app:v1", "a"),  # only app:v1 is a trailing part of other/app
        ("app:v1", "a"),  # docker.io/library/app: app:v1
        ("registry.example/team/app:v2", "c"),  # the full registry/repository:tag
        ("anything.example/x:v3", "a"),  # a bare tag
    ],
)
async def test_tags_resolve_by_the_most_complete_name(
    layout: tuple[Path, dict[str, str]], reference: str, expected: str
) -> None:
    destination, digests = layout
    store = OCILayoutStore("layout", destination, 4 * 1024 * 1024)
    assert (await store.resolve(parse_reference(reference))).digest == digests[expected]


@pytest.mark.parametrize("reference", ["registry.example/team/web:v1", "registry.example/pp:v1", "x/team/app:v2"])
async def test_names_that_are_not_a_trailing_part_do_not_match(
    layout: tuple[Path, dict[str, str]], reference: str
) -> None:
    from provider.errors import NotFoundError

    destination, _ = layout
    store = OCILayoutStore("layout", destination, 4 * 1024 * 1024)
    with pytest.raises(NotFoundError):
        await store.resolve(parse_reference(reference))


def test_verify_cli_with_layout(layout: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    destination, digests = layout
    config = write_config(
        tmp_path / "referee.yaml",
        {
            "verifiers": [{"name": "sbom", "type": "sbom"}],
            "policy": {"type": "required-verifiers", "required": ["sbom"]},
        },
    )
    result = subprocess.run(
        [
            str(REFEREE),
            "verify",
            "--config",
            str(config),
            "--layout",
            str(destination),
            "--output",
            "json",
            "registry.example/team/app:v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    (answer,) = json.loads(result.stdout)
    assert "value" in answer, answer  # found (denied: nothing is attached), not NOT_FOUND
    assert answer["value"]["digest"] == digests["b"]
    assert answer["value"]["allowed"] is False
    assert result.returncode == 1
