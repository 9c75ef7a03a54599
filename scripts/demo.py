"""Referee, end to end on this machine.

Starts Debian's docker-registry, pushes a cosign-signed image, an unsigned one and one signed with a key
Referee does not trust; starts ``referee serve`` (HTTPS, mutual TLS); sends the ProviderRequests Gatekeeper
would send to /verify and /mutate; prints the answers; then runs ``referee verify`` the way a CI job would.
Everything listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests.support.content import cosign_sign_legacy, make_image, push_image  # noqa: E402
from tests.support.referee import Pki, provider_request, write_config  # noqa: E402
from tests.support.registry import RegistryProcess  # noqa: E402

REFEREE = str(ROOT / ".venv" / "bin" / "referee")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, object], ctx: ssl.SSLContext) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - https to 127.0.0.1 only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, context=ctx, timeout=10) as response:  # noqa: S310
        result: dict[str, object] = json.loads(response.read())
        return result


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"referee serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - local health port
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("referee serve did not become ready")


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 72 - len(text)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="referee-demo-"))
    os.environ["HOME"] = str(work)
    trusted = ec.generate_private_key(ec.SECP256R1())
    untrusted = ec.generate_private_key(ec.SECP256R1())
    (work / "cosign.pub").write_bytes(
        trusted.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with RegistryProcess() as registry:
        banner(f"registry (Debian docker-registry) at {registry.url}")
        images = {tag: make_image(f"demo/{tag}") for tag in ("signed", "unsigned", "untrusted")}
        for tag, image in images.items():
            push_image(registry.url, "demo/app", tag, image)
            print(f"pushed {registry.host}/demo/app:{tag}  {image['digest']}")
        cosign_sign_legacy(registry.url, "demo/app", images["signed"]["digest"], trusted)
        cosign_sign_legacy(registry.url, "demo/app", images["untrusted"]["digest"], untrusted)
        print("signed :signed with the trusted cosign key and :untrusted with another key (legacy .sig tags)")

        pki = Pki.create(work / "pki")
        port, health = free_port(), free_port()
        config = write_config(
            work / "referee.yaml",
            {
                "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
                "verifiers": [{"name": "ci-cosign", "type": "cosign", "keys": ["cosign.pub"]}],
                "policy": {"type": "required-verifiers", "required": ["ci-cosign"]},
                "server": {
                    "address": "127.0.0.1",
                    "port": port,
                    "healthAddress": "127.0.0.1",
                    "healthPort": health,
                    "tls": pki.tls_section(),
                    "providerTimeout": "2s",
                },
            },
        )
        banner("referee config check")
        subprocess.run([REFEREE, "config", "check", str(config)], check=True)
        banner(f"referee serve (mTLS on 127.0.0.1:{port}, health on :{health})")
        server = subprocess.Popen(
            [REFEREE, "--log-level", "warning", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{health}/readyz", server)
            print("ready")
            ctx = pki.client_context()
            keys = [
                f"{registry.host}/demo/app:signed",
                f"{registry.host}/demo/app:unsigned",
                f"{registry.host}/demo/app:untrusted",
                "docker.io/library/nginx:latest",
            ]
            banner("POST /verify  (the ProviderRequest Gatekeeper sends)")
            print(json.dumps(provider_request(keys)))
            response = post(f"https://127.0.0.1:{port}/verify", provider_request(keys), ctx)
            banner("ProviderResponse, one item per key")
            for item in response["response"]["items"]:  # type: ignore[index]
                if "error" in item:
                    print(f"ERROR   {item['key']}\n        {item['error']}")
                    continue
                verdict = item["value"]
                status = "ALLOWED" if verdict["allowed"] else "DENIED "
                print(f"{status} {item['key']}\n        {verdict['reason']}")
            banner("full verdict for the signed image")
            print(json.dumps(response["response"]["items"][0]["value"], indent=2))  # type: ignore[index]
            banner("POST /mutate  (tag -> digest pinning)")
            mutated = post(f"https://127.0.0.1:{port}/mutate", provider_request(keys[:1]), ctx)
            print(json.dumps(mutated["response"], indent=2))
            banner("referee verify (what a CI pipeline runs), exit code 1 = denied")
            result = subprocess.run([REFEREE, "verify", "--config", str(config), *keys[:2]], check=False)
            print(f"exit code {result.returncode}")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)
    if args.keep:
        print(f"\nwork directory kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
