"""``referee``: serve the provider, verify images the way admission will, attach evidence, check configuration.

Exit codes of ``verify``: 0 every image allowed, 1 any image denied or undecidable, 2 configuration or usage
error. ``attach``: 0 pushed and discoverable, 1 registry or layout failure, 2 configuration or usage error.
``config check`` exits 2 with one ``path: message`` line per problem.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provider import __version__, logs
from provider.config import Config, load_config
from provider.errors import ConfigError, ProviderError
from provider.importers import cli as import_cli

if TYPE_CHECKING:
    from provider.executor import Outcome

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors, as documented
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="referee", description="Gatekeeper external-data provider for OCI supply-chain evidence")
    parser.add_argument("--version", action="version", version=f"referee {__version__}")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="default: info for serve, else warning"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the HTTPS provider")
    serve.add_argument("--config", required=True, help="configuration file (YAML)")
    verify = sub.add_parser("verify", help="print the verdicts admission would give")
    verify.add_argument("--config", required=True, help="configuration file (YAML)")
    verify.add_argument("--layout", help="verify from this OCI image layout directory instead of registries")
    verify.add_argument("--output", choices=("text", "json"), default="text")
    verify.add_argument("refs", nargs="+", metavar="REF", help="image references")
    attach = sub.add_parser(
        "attach",
        help="push files as an artifact referring to an image (referrers API or tag schema), or index one",
        description="Push FILEs as an OCI 1.1 artifact whose subject is IMAGE and make it discoverable: the "
        "registry's referrers API when it has one, else the referrers tag-schema index (read-modify-write). "
        "With --referrer, list an already pushed manifest instead (e.g. one pushed by oras-py).",
    )
    attach.add_argument("--config", help="configuration file (YAML): registries.allow, hosts, credentials")
    attach.add_argument("--layout", help="attach inside this OCI image layout directory instead of a registry")
    attach.add_argument("--artifact-type", help="the artifact's media type, e.g. application/spdx+json")
    attach.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE", help="manifest annotation")
    attach.add_argument("--referrer", metavar="DIGEST", help="index this pushed manifest (subject IMAGE)")
    attach.add_argument("--output", choices=("text", "json"), default="text")
    attach.add_argument("image", metavar="IMAGE", help="the subject image (tag or digest)")
    attach.add_argument("files", nargs="*", metavar="FILE[:MEDIATYPE]", help="files to push, one layer each")
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    trusted_root = sub.add_parser("trusted-root", help="Sigstore trusted_root.json tools")
    trusted_root_sub = trusted_root.add_subparsers(dest="trusted_root_command", required=True, parser_class=_Parser)
    fetch = trusted_root_sub.add_parser(
        "fetch",
        help="write the trusted_root.json of a Sigstore TUF repository (verified with TUF) to a file",
        description="Refresh a Sigstore TUF repository's metadata and write its trusted_root.json to OUTPUT, "
        "atomically and only when it is usable. Referee re-reads the file when it changes. Air-gapped clusters "
        "skip this and ship the file.",
    )
    fetch.add_argument("--output", required=True, help="the file verifiers name in trustedRoot")
    fetch.add_argument("--tuf-url", default=None, help="TUF repository (default: Sigstore's public-good instance)")
    fetch.add_argument("--root", help="initial root.json of a private TUF repository (not needed for public good)")
    fetch.add_argument("--every", metavar="DURATION", help="keep running and refresh this often (e.g. 24h)")
    import_cli.add_parser(sub)
    return parser


def _with_layout(config: Config, layout: str) -> Config:
    from provider.stores.base import StoreSpec
    from provider.stores.oci_layout import LayoutParams

    path = Path(layout).resolve()
    if not (path / "oci-layout").is_file():
        raise ConfigError([f"--layout: {layout} is not an OCI image layout (no oci-layout file)"])
    store = StoreSpec(name=f"layout:{path}", type="oci-layout", scopes=("*",), params=LayoutParams(str(path)))
    return dataclasses.replace(config, stores=(store,))


def _print_text(outcomes: Sequence[Outcome]) -> None:
    for o in outcomes:
        if o.verdict is not None:
            v = o.verdict
            print(f"{'ALLOWED' if v.allowed else 'DENIED '} {o.key}  ({v.digest})")
            print(f"  reason: {v.decision.reason}")
            for note in v.notes:
                print(f"  note: {note}")
            for a in v.artifacts:
                mark = "ok  " if a.succeeded else "fail"
                print(f"  [{mark}] {a.verifier} {a.artifact_type} {a.digest[:19]}: {a.reason}")
                for n in a.nested:
                    print(f"      [{'ok  ' if n.succeeded else 'fail'}] {n.verifier} {n.artifact_type}: {n.reason}")
        else:
            print(f"ERROR   {o.key}\n  {o.error}")


async def _verify(config: Config, refs: Sequence[str], output: str) -> int:
    from provider.executor import Engine

    engine = Engine(config)
    try:
        outcomes = list(await asyncio.gather(*(engine.verify_key(r) for r in refs)))
    finally:
        await engine.close()
    if output == "json":
        doc = [
            {"key": o.key, "value": o.verdict.to_json()} if o.verdict else {"key": o.key, "error": str(o.error)}
            for o in outcomes
        ]
        print(json.dumps(doc, indent=2))
    else:
        _print_text(outcomes)
    return EXIT_OK if all(o.verdict is not None and o.verdict.allowed for o in outcomes) else EXIT_DENIED


def _attach(args: argparse.Namespace) -> int:
    from provider.attach import layout, registry
    from provider.attach.artifact import check_media_type, parse_annotations
    from provider.config import RegistriesConfig, parse_config
    from provider.reference import parse_reference

    if args.referrer and (args.files or args.artifact_type or args.annotation):
        raise ConfigError(
            ["attach: --referrer lists an existing manifest; give no FILE, --artifact-type or --annotation"]
        )
    if not args.referrer and not (args.files and args.artifact_type):
        raise ConfigError(["attach: give --artifact-type and at least one FILE (or --referrer DIGEST)"])
    ref = parse_reference(args.image)
    annotations = parse_annotations(args.annotation)
    if args.artifact_type:
        check_media_type(args.artifact_type, "--artifact-type")
    if args.config:
        config = load_config(args.config)
    else:
        # No configuration: the registry named on the command line, over verified TLS, anonymously.
        config = dataclasses.replace(parse_config({}, Path.cwd()), registries=RegistriesConfig(allow=(ref.registry,)))
    max_manifest = config.limits.max_manifest_bytes
    if args.layout:
        root = Path(args.layout).resolve()
        if args.referrer:
            result = layout.index_referrer(root, ref, args.referrer, max_manifest_bytes=max_manifest)
        else:
            result = layout.attach_files(
                root, ref, args.artifact_type, args.files, annotations, max_manifest_bytes=max_manifest
            )
    elif args.referrer:
        result = registry.index_referrer(config, ref, args.referrer)
    else:
        result = registry.attach_files(config, ref, args.artifact_type, args.files, annotations)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print("\n".join(result.lines()))
    return EXIT_OK


def _trusted_root_fetch(args: argparse.Namespace) -> int:
    import time

    import structlog

    from provider import trustedroot
    from provider.confignode import parse_duration

    url = args.tuf_url or trustedroot.PUBLIC_GOOD
    trustedroot.check_url(url)
    every = None
    if args.every is not None:
        every = parse_duration(args.every)
        if every is None or every < 60:
            raise ConfigError([f"--every: {args.every!r} is not a duration of at least 1m (e.g. 24h)"])
    log = structlog.get_logger("referee.trustedroot")
    root = Path(args.root) if args.root else None
    while True:
        try:
            fetched = trustedroot.fetch(Path(args.output), url, root)
        except trustedroot.TrustedRootFetchError as exc:
            if every is None:
                print(f"referee trusted-root fetch: {exc}", file=sys.stderr)
                return EXIT_DENIED
            log.warning("trusted_root_fetch_failed", url=url, error=str(exc))
        else:
            state = "updated" if fetched.changed else "unchanged"
            if every is None:
                print(f"{fetched.path}: {state} (sha256:{fetched.sha256}) from {url}")
                return EXIT_OK
            log.info("trusted_root_fetched", url=url, path=str(fetched.path), sha256=fetched.sha256, state=state)
        time.sleep(every)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse stops filling positionals at the first option; ``attach IMAGE --opt X FILE`` is still usual.
        if args.command != "attach" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.files = [*args.files, *extra]
    serving = args.command == "serve" or (args.command == "trusted-root" and getattr(args, "every", None) is not None)
    logs.configure(args.log_level or ("info" if serving else "warning"), json_output=serving)
    try:
        if args.command == "import":
            return import_cli.run(args)
        if args.command == "trusted-root":
            return _trusted_root_fetch(args)
        if args.command == "config":
            config = load_config(args.file)
            print(
                f"{args.file}: OK (generation {config.generation}; {len(config.verifiers)} verifiers, "
                f"{len(config.stores)} stores, policy {config.policy.type})"
            )
            return EXIT_OK
        if args.command == "attach":
            try:
                return _attach(args)
            except ConfigError:
                raise
            except ProviderError as exc:
                print(f"referee attach: {exc}", file=sys.stderr)
                return EXIT_DENIED
        config = load_config(args.config)
        if args.command == "verify":
            if args.layout:
                config = _with_layout(config, args.layout)
            return asyncio.run(_verify(config, args.refs, args.output))
        from provider.server.app import serve

        asyncio.run(serve(args.config))
        return EXIT_OK
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
