"""Generate the ``config`` part of ``helm/referee/values.schema.json`` from Referee's configuration parser.

The chart passes ``.Values.config`` to Referee as its configuration file, so the chart's schema for it must
accept exactly what Referee accepts. Rather than keeping a second description by hand, this script runs
Referee's own parser (``provider.config.parse_config``) on minimal documents, one per verifier, store and
policy type, and records every key each ``Node`` reader touches, with the type, choices, bounds and
requiredness the reader asks for. Nested mappings and lists of mappings are explored by seeding them with
``{}`` / ``[{}]`` until nothing new appears. Keys read only from inside values the parser cannot reach with
empty input (for example list items parsed by custom functions) become objects marked as validated by
``referee config check`` (the pod would refuse such a file at start and on reload).

The chart owns part of ``server`` (addresses, ports, TLS files, Provider timeouts, shutdown grace): those keys
are left out, so setting them in values is an error.

    .venv/bin/python scripts/gen_chart_schema.py           # rewrite properties.config in values.schema.json
    .venv/bin/python scripts/gen_chart_schema.py --check   # exit 1 with a diff when it is out of date
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import inspect
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provider import confignode, registrations  # noqa: E402
from provider.config import API_VERSION, parse_config  # noqa: E402
from provider.confignode import Node, camel  # noqa: E402
from provider.policies.base import policy_types  # noqa: E402
from provider.stores.base import store_types  # noqa: E402
from provider.verifiers.base import verifier_types  # noqa: E402

SCHEMA_FILE = ROOT / "helm" / "referee" / "values.schema.json"
CHART_OWNED_SERVER = (
    "address",
    "port",
    "healthAddress",
    "healthPort",
    "tls",
    "providerTimeout",
    "mutateProviderTimeout",
    "shutdownGrace",
)
PASSTHROUGH = "passed through; validated by referee config check"
REQUIRED = getattr(confignode, "_MISSING")  # the default that makes a Node reader report "required"  # noqa: B009
DURATION: dict[str, Any] = {
    "description": "a duration: 250ms, 3s, 5m, 1h, 7d, a compound such as 1d12h or 1h30m, or a number of seconds",
    "oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)?|(\d+(\.\d+)?(ms|s|m|h|d)){2,})\s*$"},
    ],
}
SIZE: dict[str, Any] = {
    "description": "a size: 512KiB, 4MiB, 1GB or a number of bytes",
    "oneOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\s*\d+\s*(B|KiB|MiB|GiB|KB|MB|GB|k|M|G)?\s*$"},
    ],
}
SECTIONS = {
    "registries": "which registries Referee may contact and how",
    "stores": "where referrers are read from (default: one registry store)",
    "verifiers": "verifiers; each type has its own parameters",
    "attestors": "Binary Authorization-style attestors (docs/attestors.md); policies name them like verifiers",
    "policy": "how verifier results become a verdict; absent or empty: every image is denied",
    "server": "the rest of server is set by the chart: " + ", ".join(CHART_OWNED_SERVER),
    "cache": "cache sizes and lifetimes",
    "limits": "resource limits per verification",
    "multiArch": "opt-ins for multi-platform images (an index's evidence covering its platform manifests)",
}
_INDEX = re.compile(r"\[\d+\]")


def _norm(path: str) -> str:
    return _INDEX.sub("[]", path)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Recorder:
    """Node path (indices as ``[]``) -> key -> schema fragment, plus internal markers (``x-*``)."""

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, dict[str, Any]]] = {}
        self.required: dict[str, set[str]] = {}

    def add(self, path: str, key: str, schema: dict[str, Any], required: bool = False) -> None:
        slot = self.fields.setdefault(_norm(path), {})
        slot[key] = merge(slot.get(key), schema)
        if required:
            self.required.setdefault(_norm(path), set()).add(key)


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Combine two observations of one key: markers for mappings and lists of mappings win over less."""
    if old is None or old == new:
        return new
    for marker in ("x-node", "x-nodes"):
        if marker in old or marker in new:
            return old if marker in old else new
    if not old:
        return new
    if not new:
        return old
    return {"anyOf": [old, new]}


@contextlib.contextmanager
def recording(rec: Recorder) -> Iterator[None]:
    """Wrap the ``Node`` readers so every key read is recorded with its expected shape."""

    def arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        return dict(bound.arguments)

    def missing_default(bound: dict[str, Any], fn: Callable[..., Any]) -> bool:
        """The reader was called without a default: Referee reports the key as required."""
        if "default" in bound:
            return bound["default"] is REQUIRED
        param = inspect.signature(fn).parameters.get("default")
        return param is not None and param.default is REQUIRED

    originals: dict[str, Callable[..., Any]] = {}

    def wrap(name: str, describe: Callable[[dict[str, Any]], dict[str, Any]], *, can_require: bool = False) -> None:
        original = getattr(Node, name)
        originals[name] = original

        def wrapper(self: Node, *args: Any, **kwargs: Any) -> Any:
            bound = arguments(original, (self, *args), kwargs)
            key = camel(bound["name"])
            required = can_require and missing_default(bound, original)
            rec.add(self.path, key, describe(bound), required)
            return original(self, *args, **kwargs)

        setattr(Node, name, wrapper)

    def integer(b: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if b.get("minimum") is not None:
            out["minimum"] = b["minimum"]
        if b.get("maximum") is not None:
            out["maximum"] = b["maximum"]
        return out

    def string(b: dict[str, Any]) -> dict[str, Any]:
        choices = b.get("choices")
        return {"type": "string", "enum": list(choices)} if choices else {"type": "string"}

    try:
        wrap("string", string, can_require=True)
        wrap("flag", lambda b: {"type": "boolean"})
        wrap("integer", integer, can_require=True)
        wrap("duration", lambda b: copy.deepcopy(DURATION))
        wrap("size", lambda b: copy.deepcopy(SIZE))
        wrap("str_list", lambda b: {"type": "array", "items": {"type": "string", "minLength": 1}})
        wrap("node", lambda b: {"x-node": True})
        wrap("nodes", lambda b: {"x-nodes": True})
        wrap("items", lambda b: {"type": "array"})
        wrap("raw", lambda b: {})
        wrap("has", lambda b: {})
        for name in ("secret", "file_or_inline"):
            original = getattr(Node, name)
            originals[name] = original

            def paired(self: Node, name_: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                rec.add(self.path, camel(name_), {"type": "string"})
                rec.add(self.path, camel(f"{name_}_file"), {"type": "string", "minLength": 1})
                return _original(self, name_, *args, **kwargs)

            setattr(Node, name, paired)
        yield
    finally:
        for name, original in originals.items():
            setattr(Node, name, original)


def _seed(document: dict[str, Any], path: str, value: Any) -> bool:
    """Put ``value`` at ``path`` (``a.b[].c``) unless something is there; False if the path is blocked."""
    node: Any = document
    parts = path.split(".")
    for i, part in enumerate(parts):
        is_list = part.endswith("[]")
        key = part[:-2] if is_list else part
        if not isinstance(node, dict):
            return False
        last = i == len(parts) - 1
        if last and not is_list:
            if key in node:
                return False
            node[key] = value
            return True
        if is_list:
            if key not in node:
                node[key] = [{}]
                if last:
                    return True
            if not isinstance(node[key], list) or not node[key]:
                return False
            node = node[key][0]
        else:
            node = node.setdefault(key, {})
    return False


def explore(document: dict[str, Any], rounds: int = 60) -> Recorder:
    """Parse ``document`` repeatedly, seeding what the parser asked for: ``[{}]`` for lists of mappings and,
    one at a time, ``{}`` for keys it only tested with ``has()`` (kept if it turns out to be a mapping)."""
    registrations.load()
    doc = copy.deepcopy(document)
    rec = Recorder()
    tried: set[str] = set()
    seeded: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            with recording(rec), contextlib.suppress(Exception):
                parse_config(copy.deepcopy(doc), Path(tmp))
            for path in list(seeded):  # a seeded key read as a scalar is not a mapping: take the seed back
                parent, _, key = path.rpartition(".")
                schema = rec.fields.get(parent, {}).get(key, {})
                if schema and "x-node" not in schema and "x-nodes" not in schema:
                    _unseed(doc, path)
                    seeded.discard(path)
            changed = False
            for path, keys in list(rec.fields.items()):
                for key, schema in keys.items():
                    child = _child(path, key)
                    if "x-nodes" in schema and not _has_list(doc, child) and _seed(doc, child + "[]", {}):
                        changed = True
            if not changed:
                pending = [
                    _child(path, key)
                    for path, keys in rec.fields.items()
                    for key, schema in keys.items()
                    if not schema and key != "type" and _child(path, key) not in tried
                ]
                if not pending:
                    break
                tried.add(pending[0])
                if _seed(doc, pending[0], {}):
                    seeded.add(pending[0])
    return rec


def _unseed(document: dict[str, Any], path: str) -> None:
    node: Any = document
    parts = path.split(".")
    for part in parts[:-1]:
        key = part[:-2] if part.endswith("[]") else part
        node = node[key][0] if part.endswith("[]") else node[key]
    node.pop(parts[-1], None)


def _has_list(document: dict[str, Any], path: str) -> bool:
    node: Any = document
    for part in path.split("."):
        key = part[:-2] if part.endswith("[]") else part
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
        if part.endswith("[]"):
            if not isinstance(node, list) or not node:
                return False
            node = node[0]
    return isinstance(node, list) and bool(node)


def build(rec: Recorder, path: str, description: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, schema in sorted(rec.fields.get(path, {}).items()):
        child = _child(path, key)
        if "x-node" in schema:
            props[key] = build(rec, child) if child in rec.fields else {"type": "object", "description": PASSTHROUGH}
        elif "x-nodes" in schema:
            item = build(rec, child + "[]") if child + "[]" in rec.fields else {"description": PASSTHROUGH}
            props[key] = {"type": "array", "items": item}
        elif schema.get("type") == "array" and "items" not in schema:
            props[key] = {"type": "array", "items": {"description": PASSTHROUGH}}
        elif not schema:  # read raw: any value Referee accepts there
            props[key] = {"description": PASSTHROUGH}
        else:
            props[key] = schema
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    required = sorted(rec.required.get(path, set()) & set(props))
    if required:
        out["required"] = required
    if description:
        out["description"] = description
    return out


def _type_dispatch(by_type: dict[str, set[str]]) -> list[dict[str, Any]]:
    return [
        {
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"propertyNames": {"enum": sorted(keys)}},
        }
        for name, keys in sorted(by_type.items())
    ]


def config_schema() -> dict[str, Any]:
    registrations.load()
    merged = Recorder()
    per_type: dict[str, dict[str, set[str]]] = {"verifiers[]": {}, "stores[]": {}, "policy": {}}
    runs: list[tuple[str | None, str | None, dict[str, Any]]] = [(None, None, {"registries": {"hosts": [{}]}})]
    runs += [("verifiers[]", t, {"verifiers": [{"name": "v", "type": t}]}) for t in verifier_types.names()]
    runs += [("stores[]", t, {"stores": [{"name": "s", "type": t}]}) for t in store_types.names()]
    runs += [("policy", t, {"policy": {"type": t}}) for t in policy_types.names()]
    for slot, type_name, document in runs:
        rec = explore(document)
        for path, keys in rec.fields.items():
            for key, schema in keys.items():
                merged.add(path, key, schema, key in rec.required.get(path, set()))
        if slot is not None and type_name is not None:
            per_type[slot][type_name] = set(rec.fields.get(slot, {}))
    schema = build(merged, "", "Referee's configuration (docs/configuration.md) without the parts the chart owns")
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "const": API_VERSION}
    server = props["server"]["properties"]
    for key in CHART_OWNED_SERVER:
        server.pop(key, None)
    for section, text in SECTIONS.items():
        target = props[section]["items"] if props[section].get("type") == "array" else props[section]
        target.setdefault("description", text)
    for slot, registry in (("verifiers", verifier_types), ("stores", store_types)):
        item = props[slot]["items"]
        item["properties"]["type"] = {"type": "string", "enum": registry.names()}
        item["required"] = ["name", "type"]
        item["allOf"] = _type_dispatch(per_type[f"{slot}[]"])
    props["policy"]["properties"]["type"] = {"type": "string", "enum": policy_types.names()}
    props["policy"]["allOf"] = _type_dispatch(per_type["policy"])
    props["policy"].pop("required", None)
    # url and hmacKeyFile may come from the chart's sharedCache values; referee config check requires them
    props["cache"]["properties"]["shared"].pop("required", None)
    return schema


def render(current: dict[str, Any]) -> str:
    updated = copy.deepcopy(current)
    updated["properties"]["config"] = config_schema()
    return json.dumps(updated, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if values.schema.json is out of date")
    args = parser.parse_args(argv)
    text = SCHEMA_FILE.read_text()
    wanted = render(json.loads(text))
    if args.check:
        if wanted == text:
            return 0
        diff = difflib.unified_diff(
            text.splitlines(), wanted.splitlines(), "values.schema.json", "generated", lineterm=""
        )
        print("\n".join(diff))
        print("values.schema.json is out of date: run .venv/bin/python scripts/gen_chart_schema.py", file=sys.stderr)
        return 1
    SCHEMA_FILE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
