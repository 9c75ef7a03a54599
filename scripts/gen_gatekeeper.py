"""Build Gatekeeper ConstraintTemplates from the Rego sources.

For every ``rego/<name>/`` holding ``src.rego`` and ``template.yaml`` this writes
``gatekeeper/templates/<name>.yaml``, embedding ``src.rego`` unchanged in the legacy ``spec.targets[0].rego``
field. The sources use Rego v1 syntax with explicit ``future.keywords`` imports, which Gatekeeper accepts in
that field and also under ``code: [{engine: Rego, source: {version: "v1", rego: ...}}]`` (Gatekeeper >= 3.19).
The two are not combined in one object: the ConstraintTemplate API allows Rego in one place only.

    .venv/bin/python scripts/gen_gatekeeper.py           # write the generated files
    .venv/bin/python scripts/gen_gatekeeper.py --check   # exit 1 with a diff when they are out of date

Exit 2 when a source breaks a rule Gatekeeper enforces (see docs/cookbook.md, "How the templates are built").
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
REGO_DIR = ROOT / "rego"
OUT_DIR = ROOT / "gatekeeper" / "templates"
TARGET = "admission.k8s.gatekeeper.sh"
REQUIRED_IMPORTS = ("import future.keywords.contains", "import future.keywords.if", "import future.keywords.in")
COMMON_BEGIN = "# --- referee common: begin"
COMMON_END = "# --- referee common: end ---"


class SourceError(Exception):
    """A Rego source or template description that Gatekeeper would refuse."""


@dataclass(frozen=True)
class Template:
    name: str
    kind: str
    description: str
    parameters: dict[str, Any]
    rego: str


class _Literal(str):
    """Emitted as a YAML literal block."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))


def _common_block(rego: str, path: Path) -> str:
    start, end = rego.find(COMMON_BEGIN), rego.find(COMMON_END)
    if start < 0 or end < start:
        raise SourceError(f"{path}: missing the '{COMMON_BEGIN}' ... '{COMMON_END}' section")
    return rego[start:end]


def _check_rego(name: str, rego: str, path: Path) -> None:
    package = re.search(r"^package\s+(\S+)", rego, re.MULTILINE)
    if package is None or package.group(1) != name:
        raise SourceError(f"{path}: the package must be {name!r} (the directory name)")
    if re.search(r"^\s*import\s+rego\.v1\b", rego, re.MULTILINE):
        raise SourceError(f"{path}: Gatekeeper rejects 'import rego.v1' in templates; import future.keywords.*")
    missing = [line for line in REQUIRED_IMPORTS if not re.search(rf"^{re.escape(line)}\s*$", rego, re.MULTILINE)]
    if missing:
        raise SourceError(f"{path}: missing {', '.join(missing)} (needed to parse in Gatekeeper's legacy field)")
    if not re.search(r"^violation\s+contains\b", rego, re.MULTILINE):
        raise SourceError(f"{path}: Gatekeeper requires a 'violation' rule")
    for number, line in enumerate(rego.splitlines(), 1):
        if "\t" in line or line != line.rstrip():
            raise SourceError(f"{path}:{number}: tabs or trailing spaces (the YAML block would not be literal)")


def load_templates(rego_dir: Path = REGO_DIR) -> list[Template]:
    templates: list[Template] = []
    commons: dict[str, tuple[Path, str]] = {}
    for src in sorted(rego_dir.glob("*/src.rego")):
        name = src.parent.name
        rego = src.read_text()
        _check_rego(name, rego, src)
        commons[name] = (src, _common_block(rego, src))
        meta_path = src.parent / "template.yaml"
        meta = yaml.safe_load(meta_path.read_text())
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if not isinstance(kind, str) or kind.lower() != name:
            raise SourceError(f"{meta_path}: kind must be the CamelCase of {name!r}")
        parameters = meta.get("parameters")
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            raise SourceError(f"{meta_path}: parameters must be a structural schema of type object")
        templates.append(Template(name, kind, str(meta.get("description", "")).strip(), parameters, rego))
    if not templates:
        raise SourceError(f"no rego/<name>/src.rego under {rego_dir}")
    first_path, first = next(iter(commons.values()))
    for path, block in commons.values():
        if block != first:
            diff = "".join(
                difflib.unified_diff(first.splitlines(True), block.splitlines(True), str(first_path), str(path))
            )
            raise SourceError(f"the common sections differ; keep them identical:\n{diff}")
    return templates


def render(template: Template) -> str:
    document = {
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {
            "name": template.name,
            "annotations": {
                "metadata.gatekeeper.sh/title": template.kind,
                "description": template.description,
            },
        },
        "spec": {
            "crd": {"spec": {"names": {"kind": template.kind}, "validation": {"openAPIV3Schema": template.parameters}}},
            "targets": [{"target": TARGET, "rego": _Literal(template.rego)}],
        },
    }
    header = (
        f"# Generated by scripts/gen_gatekeeper.py from rego/{template.name}/src.rego and template.yaml: do not edit.\n"
    )
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def expected_files(rego_dir: Path = REGO_DIR, out_dir: Path = OUT_DIR) -> dict[Path, str]:
    return {out_dir / f"{t.name}.yaml": render(t) for t in load_templates(rego_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    try:
        expected = expected_files()
    except SourceError as exc:
        print(f"gen_gatekeeper: {exc}", file=sys.stderr)
        return 2
    stale = sorted(set(OUT_DIR.glob("*.yaml")) - set(expected))
    if args.check:
        diffs: list[str] = []
        for path, text in expected.items():
            current = path.read_text() if path.exists() else ""
            if current != text:
                rel = path.relative_to(ROOT)
                diffs.extend(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(rel), str(rel)))
        diffs.extend(f"stale generated file: {path.relative_to(ROOT)}\n" for path in stale)
        if diffs:
            sys.stdout.writelines(diffs)
            print("gen_gatekeeper: out of date; run .venv/bin/python scripts/gen_gatekeeper.py", file=sys.stderr)
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in expected.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
