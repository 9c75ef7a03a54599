"""The shared cache (issue #12) on a real ``redis-server``: engines that share it, like replicas, on the real registry
behind the referrers test double (which counts and delays requests per path).

Each test uses its own repository and its own key prefix, so counts of registry requests and cache keys are the
test's own. What each proves is in its docstring."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from provider import deadline, metrics
from provider.config import load_config
from provider.executor import Engine, Outcome
from provider.sharedcache import RedisSharedCache, Sealer, _key_id
from tests.integration.conftest import SignedSet
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.redis import RedisServer
from tests.support.referee import items_by_key, running_referee, server_section, write_config
from tests.support.referrers_proxy import ReferrersProxy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def hmac_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "hmac.key"
    path.write_text(secrets.token_hex(32) + "\n")
    return path


@pytest.fixture
async def engines() -> AsyncIterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        await engine.close()


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class Setup:
    """One test's repository, images and configuration files."""

    def __init__(self, proxy: ReferrersProxy, signed: SignedSet, tmp_path: Path, redis: RedisServer, key: Path):
        self.proxy = proxy
        self.signed = signed
        self.tmp = tmp_path
        self.redis = redis
        self.hmac_key_file = key
        self.repo = f"shared/{tmp_path.name.lower()}"[:60]
        self.prefix = f"t-{secrets.token_hex(4)}:"
        self._configs = 0
        self.signatures: dict[str, Any] = {}

    def image(self, tag: str, *, signed: bool = True) -> tuple[str, str]:
        """Push an image (signed with the set's key unless told); returns (tag reference, digest reference)."""
        image = make_image(f"{self.repo}/{tag}/{secrets.token_hex(4)}")
        push_image(self.proxy.url, self.repo, tag, image)
        if signed:
            self.signatures[tag] = cosign_sign_legacy(self.proxy.url, self.repo, image["digest"], self.signed.key)
        return f"{self.proxy.host}/{self.repo}:{tag}", f"{self.proxy.host}/{self.repo}@{image['digest']}"

    def shared(self, **overrides: Any) -> dict[str, Any]:
        """Generous operation timeouts (a busy CI machine must not turn a test local-only) unless a test sets them."""
        return {
            "url": self.redis.url,
            "hmacKeyFile": str(self.hmac_key_file),
            "keyPrefix": self.prefix,
            "retryInterval": "200ms",
            "operationTimeout": "1s",
            **overrides,
        }

    def config(
        self,
        *,
        shared: dict[str, Any] | None = None,
        key_file: Path | None = None,
        host: dict[str, Any] | None = None,
        **top: Any,
    ) -> Path:
        self._configs += 1
        doc: dict[str, Any] = {
            "registries": {
                "allow": ["127.0.0.1:*"],
                "hosts": [{"host": self.proxy.host, "plainHttp": True, "referrersApi": "never", **(host or {})}],
                "requestTimeout": "30s",
            },
            "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(key_file or self.signed.key_file)]}],
            "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
            "cache": {"shared": self.shared() if shared is None else shared},
            **top,
        }
        return write_config(self.tmp / f"referee-{self._configs}.yaml", doc)

    def requests(self) -> int:
        return sum(1 for _, path in self.proxy.log if f"/{self.repo}/" in path)


@pytest.fixture
def setup(
    referrers_proxy: ReferrersProxy,
    signed_set: SignedSet,
    tmp_path: Path,
    redis_server: RedisServer,
    hmac_key_file: Path,
) -> Setup:
    return Setup(referrers_proxy, signed_set, tmp_path, redis_server, hmac_key_file)


async def verify(engine: Engine, key: str, budget: float = 20.0) -> Outcome:
    with deadline.deadline_after(budget):
        return await engine.verify_key(key)


def allowed(outcome: Outcome) -> bool:
    return outcome.verdict is not None and outcome.verdict.allowed


# -- sharing ------------------------------------------------------------------------------------------------------


async def test_a_second_engine_answers_a_known_image_with_no_registry_request(
    setup: Setup, engines: list[Engine]
) -> None:
    """A replica that starts cold answers images another replica verified from the shared cache alone (tag and digest
    references), with the very same verdict bytes; replicas whose files differ only in ``server`` settings (ports)
    share, because the shared keys use the decision generation."""
    tag_ref, digest_ref = setup.image("v1")
    first = Engine(load_config(setup.config(server={"port": 18443})))
    engines.append(first)
    a_tag, a_digest = await verify(first, tag_ref), await verify(first, digest_ref)
    assert allowed(a_tag) and allowed(a_digest), (a_tag, a_digest)
    assert setup.requests() > 0

    setup.proxy.log.clear()
    hits = metric("referee_cache_events_total", cache="verdict", tier="shared", result="hit")
    second = Engine(load_config(setup.config(server={"port": 28443})))
    engines.append(second)
    assert second.config.generation != first.config.generation
    assert second.config.decision_generation == first.config.decision_generation
    b_tag, b_digest = await verify(second, tag_ref), await verify(second, digest_ref)
    assert allowed(b_tag) and allowed(b_digest), (b_tag, b_digest)
    assert setup.requests() == 0, setup.proxy.log
    assert metric("referee_cache_events_total", cache="verdict", tier="shared", result="hit") >= hits + 1
    assert a_tag.verdict is not None and b_tag.verdict is not None
    assert b_tag.verdict.encoded() == a_tag.verdict.encoded()
    assert b_tag.verdict.decision == a_tag.verdict.decision  # code, verifiers, unmet: the round trip is faithful
    # and now it is in the second engine's own cache: answered without I/O
    assert second.cached_outcome(tag_ref) is not None


async def test_configuration_generations_do_not_share(setup: Setup, engines: list[Engine]) -> None:
    """An engine whose verifiers trust another key must not reuse the first engine's verdict: it verifies itself (and
    denies), because the decision generation is part of every shared key; the first engine's verdict is untouched."""
    tag_ref, _ = setup.image("v1")
    trusting = Engine(load_config(setup.config()))
    engines.append(trusting)
    assert allowed(await verify(trusting, tag_ref))

    setup.proxy.log.clear()
    other = Engine(load_config(setup.config(key_file=setup.signed.other_key_file)))
    engines.append(other)
    assert other.config.decision_generation != trusting.config.decision_generation
    outcome = await verify(other, tag_ref)
    assert outcome.verdict is not None and not outcome.verdict.allowed, outcome
    assert setup.requests() > 0

    third = Engine(load_config(setup.config()))
    engines.append(third)
    assert allowed(await verify(third, tag_ref))


async def test_a_partial_verdict_is_shared_only_briefly(setup: Setup, engines: list[Engine]) -> None:
    """A verdict decided without examining every referrer (complete: false) lives in the shared tier only
    ``min(verdictTtl, tagTtl)``, as in the local one; a complete verdict lives ``verdictTtl``."""
    _, partial_ref = setup.image("partial")
    _, complete_ref = setup.image("complete")
    engine = Engine(load_config(setup.config(cache={"verdictTtl": "300s", "tagTtl": "7s", "shared": setup.shared()})))
    engines.append(engine)
    # the signature payload of the "partial" image reads back corrupted: a denial decided on partial evidence
    setup.proxy.corrupt_paths.add(f"/v2/{setup.repo}/blobs/{setup.signatures['partial'].layer['digest']}")
    partial = await verify(engine, partial_ref)
    assert partial.verdict is not None and not partial.verdict.allowed and partial.verdict.complete is False
    assert allowed(await verify(engine, complete_ref))
    client = setup.redis.client()
    assert 0 < client.pttl(_verdict_name(setup, engine, partial_ref)) <= 7_000
    assert 290_000 < client.pttl(_verdict_name(setup, engine, complete_ref)) <= 300_000


# -- authentication -----------------------------------------------------------------------------------------------


def _verdict_name(setup: Setup, engine: Engine, ref: str) -> str:
    """Where a replica keeps the verdict of ``ref`` (pinned by digest): names follow from public facts."""
    repository, digest = ref.split("@")
    store = engine.runtime.stores[0][1].name
    key = (store, repository, "", digest, engine.config.decision_generation)
    return f"{setup.prefix}v1:verdict:{_key_id('verdict', key)}"


async def test_forged_and_replayed_entries_never_admit_an_image(setup: Setup, engines: list[Engine]) -> None:
    """Write access to the cache alone cannot admit an image. An "allowed" verdict sealed with another key (a forged
    or foreign entry), and a genuine allowed verdict copied under an unsigned image's key (a replay), are ignored and
    counted; the unsigned image is verified and denied. A forged tag resolution that points an unsigned tag at the
    signed digest is ignored as well."""
    signed_tag, signed_ref = setup.image("signed")
    unsigned_tag, unsigned_ref = setup.image("unsigned", signed=False)
    writer = Engine(load_config(setup.config()))
    engines.append(writer)
    genuine = await verify(writer, signed_ref)
    assert allowed(genuine) and genuine.verdict is not None
    client = setup.redis.client()
    genuine_blob = client.get(_verdict_name(setup, writer, signed_ref))
    assert genuine_blob is not None

    # 1. forged: an allowed verdict for the unsigned digest, sealed with a key that is not the replicas'
    forged = genuine.verdict.to_record()
    forged["verdict"]["digest"] = unsigned_ref.split("@")[1]
    forged["verdict"]["subject"] = unsigned_ref
    name = _verdict_name(setup, writer, unsigned_ref)
    payload = json.dumps({"d": forged, "exp": time.time() + 300}).encode()
    client.set(name, Sealer(secrets.token_bytes(32)).seal(name.encode(), payload), px=300_000)
    rejected = metric("referee_shared_cache_rejected_entries_total", reason="signature")
    reader = Engine(load_config(setup.config()))
    engines.append(reader)
    outcome = await verify(reader, unsigned_ref)
    assert outcome.verdict is not None and not outcome.verdict.allowed, outcome
    counted = metric("referee_shared_cache_rejected_entries_total", reason="signature")
    assert counted > rejected

    # 2. replayed: the genuine sealed entry of the signed image, copied under the unsigned image's key
    client.set(name, genuine_blob, px=300_000)
    replayed = Engine(load_config(setup.config()))
    engines.append(replayed)
    outcome = await verify(replayed, unsigned_ref)
    assert outcome.verdict is not None and not outcome.verdict.allowed, outcome
    assert metric("referee_shared_cache_rejected_entries_total", reason="signature") > counted
    counted = metric("referee_shared_cache_rejected_entries_total", reason="signature")

    # 3. a tag resolution pointing the unsigned tag at the signed digest, copied from the signed tag's entry
    await verify(writer, signed_tag)
    store = writer.runtime.stores[0][1].name
    generation = writer.config.decision_generation
    signed_name = f"{setup.prefix}v1:tag:{_key_id('tag', (store, generation, signed_tag))}"
    unsigned_name = f"{setup.prefix}v1:tag:{_key_id('tag', (store, generation, unsigned_tag))}"
    client.set(unsigned_name, client.get(signed_name) or b"", px=300_000)
    retagged = Engine(load_config(setup.config()))
    engines.append(retagged)
    outcome = await verify(retagged, unsigned_tag)
    assert outcome.verdict is not None and not outcome.verdict.allowed, outcome
    assert outcome.verdict.digest == unsigned_ref.split("@")[1]
    assert metric("referee_shared_cache_rejected_entries_total", reason="signature") > counted


async def test_an_expired_entry_is_not_served_even_when_the_cache_keeps_it(setup: Setup, engines: list[Engine]) -> None:
    """A genuine entry replayed after its own expiry (the cache was told to keep it forever) is ignored: the expiry is
    inside the sealed payload."""
    _, ref = setup.image("old")
    writer = Engine(load_config(setup.config()))
    engines.append(writer)
    assert allowed(await verify(writer, ref))
    client = setup.redis.client()
    name = _verdict_name(setup, writer, ref)
    cache = RedisSharedCache(writer.config.cache.shared, wall=lambda: time.time() + 3600)  # type: ignore[arg-type]
    try:
        expired = metric("referee_shared_cache_rejected_entries_total", reason="expired")
        assert (
            await cache.get_verdict(
                (
                    writer.runtime.stores[0][1].name,
                    ref.split("@")[0],
                    "",
                    ref.split("@")[1],
                    writer.config.decision_generation,
                )
            )
            is None
        )
        assert metric("referee_shared_cache_rejected_entries_total", reason="expired") == expired + 1
    finally:
        await cache.close()
    assert client.exists(name)


# -- single flight across replicas --------------------------------------------------------------------------------


async def test_one_replica_verifies_while_the_other_waits_for_its_verdict(setup: Setup, engines: list[Engine]) -> None:
    """Two engines asked for the same cold digest at once: the one holding the lease verifies (its signature reads are
    slowed down), the other waits for its verdict instead of verifying too — the signature is fetched once."""
    _, ref = setup.image("busy")
    digest = ref.split("@")[1]
    holder = Engine(load_config(setup.config()))
    waiter = Engine(load_config(setup.config()))
    engines += [holder, waiter]
    setup.proxy.log.clear()
    signature_tag = digest.replace(":", "-") + ".sig"
    setup.proxy.path_delays[signature_tag] = 1.5
    waits = metric("referee_shared_cache_waits_total", outcome="verdict")
    first = asyncio.ensure_future(verify(holder, ref))
    client = setup.redis.client()
    lease_name = f"{setup.prefix}v1:lease:{_verdict_name(setup, holder, ref).rsplit(':', 1)[1]}"
    for _ in range(2000):
        if client.exists(lease_name):
            break
        await asyncio.sleep(0.01)
    assert client.exists(lease_name), "the first engine never took the lease"
    second = await verify(waiter, ref)
    held = await first
    assert allowed(held) and allowed(second), (held, second)
    assert held.verdict is not None and second.verdict is not None
    assert second.verdict.verified_at == held.verdict.verified_at  # the holder's verdict, not a second verification
    assert sum(1 for _, p in setup.proxy.log if p.endswith(signature_tag)) == 1, setup.proxy.log
    assert metric("referee_shared_cache_waits_total", outcome="verdict") == waits + 1
    assert not client.exists(lease_name)  # released


_HOLDER = """
import asyncio, sys
from provider.config import load_config
from provider.sharedcache import RedisSharedCache

async def main():
    config = load_config(sys.argv[1])
    cache = RedisSharedCache(config.cache.shared)
    key = (sys.argv[2], sys.argv[3], "", sys.argv[4], config.decision_generation)
    lease = await cache.claim(("verdict", key), 600.0)
    print("held" if lease is not None else "not-held", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_engines_asked_for_the_same_new_tags_at_once_ask_the_registry_once(
    setup: Setup, engines: list[Engine]
) -> None:
    """Three engines given the same cold tags at the same moment (as Gatekeeper's retries spread over replicas): every
    tag is resolved once and every image verified once across them — no registry request is made twice — and all
    three answer every key. One admission slot per engine makes keys queue, so a replica often finds the work done
    by the time it gets to it (it looks again under the lease)."""
    refs = [setup.image(f"burst{i}")[0] for i in range(12)]
    replicas = [Engine(load_config(setup.config(host={"maxConcurrency": 1}))) for _ in range(3)]
    engines += replicas
    setup.proxy.log.clear()
    with deadline.deadline_after(30):
        outcomes = await asyncio.gather(*(e.verify_key(ref) for ref in refs for e in replicas))
    assert all(allowed(o) for o in outcomes), outcomes
    sent = [(m, p) for m, p in setup.proxy.log if f"/{setup.repo}/" in p]
    assert sent and len(sent) == len(set(sent)), sorted(sent)
    assert sum(1 for m, p in sent if m == "HEAD" and ":" not in p.rsplit("/", 1)[1]) >= len(refs)


async def test_a_lease_whose_holder_died_is_taken_over(setup: Setup, engines: list[Engine]) -> None:
    """A replica process takes the lease on a digest and is killed (SIGKILL) before it verifies: nobody renews the
    lease, and the waiting engine verifies the image itself once the lease ends (``leaseTtl``), within its deadline."""
    _, ref = setup.image("orphan")
    repository, digest = ref.split("@")
    config_path = setup.config(shared=setup.shared(leaseTtl="1s", operationTimeout="300ms"))
    engine = Engine(load_config(config_path))
    engines.append(engine)
    store = engine.runtime.stores[0][1].name
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(config_path), store, repository, digest],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.to_thread(holder.stdout.readline)
        assert line.strip() == b"held", line
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        lease_name = f"{setup.prefix}v1:lease:{_verdict_name(setup, engine, ref).rsplit(':', 1)[1]}"
        assert setup.redis.client().exists(lease_name)
        takeovers = metric("referee_shared_cache_waits_total", outcome="takeover")
        outcome = await verify(engine, ref)
        assert allowed(outcome), outcome
        assert metric("referee_shared_cache_waits_total", outcome="takeover") == takeovers + 1
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)


async def test_a_lease_no_replica_made_is_ignored(setup: Setup, engines: list[Engine]) -> None:
    """A lease written by someone without the key (e.g. to keep replicas waiting forever) is rejected and counted: the
    engine verifies at once instead of waiting."""
    _, ref = setup.image("squatted")
    engine = Engine(load_config(setup.config()))
    engines.append(engine)
    lease_name = f"{setup.prefix}v1:lease:{_verdict_name(setup, engine, ref).rsplit(':', 1)[1]}"
    setup.redis.client().set(lease_name, b"deadbeef.99999999999999." + b"00" * 32, px=600_000)
    rejected = metric("referee_shared_cache_rejected_entries_total", reason="signature")
    waits = metric("referee_shared_cache_waits_total", outcome="takeover")
    assert allowed(await verify(engine, ref))
    assert metric("referee_shared_cache_rejected_entries_total", reason="signature") > rejected
    assert metric("referee_shared_cache_waits_total", outcome="takeover") == waits


# -- the cache failing --------------------------------------------------------------------------------------------


async def _until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_cache_that_stops_answering_turns_referee_local_only_and_it_comes_back(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, hmac_key_file: Path, engines: list[Engine]
) -> None:
    """A cache that hangs (SIGSTOP) or is gone (stopped) fails no request: each operation gives up after
    ``operationTimeout``, after three such failures the tier goes local-only (gauge, status), every image is still
    verified; when the cache answers again the tier reconnects by itself and entries are written again."""
    with RedisServer() as redis:
        setup = Setup(referrers_proxy, signed_set, tmp_path, redis, hmac_key_file)
        refs = [setup.image(f"v{i}")[1] for i in range(3)]
        engine = Engine(load_config(setup.config(shared=setup.shared(operationTimeout="250ms"))))
        engines.append(engine)
        assert engine.shared is not None
        assert allowed(await verify(engine, refs[0]))
        assert engine.shared_status() == {"state": "up"}

        assert redis._proc is not None
        os.kill(redis._proc.pid, signal.SIGSTOP)  # slow: accepts nothing, answers nothing
        try:
            errors = metric("referee_shared_cache_errors_total", operation="get")
            outcome = await verify(engine, refs[1])
            assert allowed(outcome), outcome
            status = engine.shared_status()
            assert status is not None and status["state"] == "local-only", status
            assert metric("referee_shared_cache_local_only") == 1
            assert metric("referee_shared_cache_errors_total", operation="get") > errors
        finally:
            os.kill(redis._proc.pid, signal.SIGCONT)
        await _until(lambda: engine.shared_status() == {"state": "up"}, "the reconnection after SIGCONT")
        assert metric("referee_shared_cache_local_only") == 0

        redis.stop()
        outcome = await verify(engine, refs[2])
        assert allowed(outcome), outcome
        assert engine.shared_status()["state"] == "local-only"  # type: ignore[index]
        redis.start()
        await _until(lambda: engine.shared_status() == {"state": "up"}, "the reconnection after a restart")
        fresh = Engine(load_config(setup.config()))
        engines.append(fresh)
        assert allowed(await verify(fresh, refs[2]))
        names = list(redis.client().scan_iter(f"{setup.prefix}v1:verdict:*"))
        assert names, "nothing written after the reconnection"


async def test_an_unreachable_cache_from_the_start_fails_no_request(
    setup: Setup, engines: list[Engine], tmp_path: Path
) -> None:
    """Nothing listens at the configured address: the first operation fails, the engine answers local-only."""
    from tests.support.redis import free_port

    _, ref = setup.image("alone")
    engine = Engine(
        load_config(setup.config(shared=setup.shared(url=f"redis://127.0.0.1:{free_port()}", operationTimeout="250ms")))
    )
    engines.append(engine)
    assert allowed(await verify(engine, ref))
    status = engine.shared_status()
    assert status is not None and status["state"] == "local-only" and "Connection" in status["error"], status


# -- TLS ----------------------------------------------------------------------------------------------------------


async def test_rediss_with_a_verified_certificate(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, hmac_key_file: Path, engines: list[Engine]
) -> None:
    """``rediss://`` to a redis-server with a trustme certificate: engines that trust its CA (``caFile``) share; one
    that does not (system trust only) fails the handshake and answers local-only — TLS is never turned off."""
    ca = trustme.CA()
    with RedisServer(tls_ca=ca) as redis:
        assert redis.ca_file is not None
        setup = Setup(referrers_proxy, signed_set, tmp_path, redis, hmac_key_file)
        _, ref = setup.image("tls")
        first = Engine(load_config(setup.config(shared=setup.shared(caFile=str(redis.ca_file)))))
        engines.append(first)
        assert allowed(await verify(first, ref))
        assert first.shared_status() == {"state": "up"}
        setup.proxy.log.clear()
        second = Engine(load_config(setup.config(shared=setup.shared(caFile=str(redis.ca_file)))))
        engines.append(second)
        assert allowed(await verify(second, ref))
        assert setup.requests() == 0

        untrusting = Engine(load_config(setup.config()))
        engines.append(untrusting)
        assert allowed(await verify(untrusting, ref))
        status = untrusting.shared_status()
        assert status is not None and status["state"] == "local-only", status
        assert "SSL" in status["error"] or "certificate" in status["error"], status


# -- the server ---------------------------------------------------------------------------------------------------


async def test_two_servers_share_and_readyz_reports_the_cache(setup: Setup, pki: Any, tmp_path: Path) -> None:
    """Two ``referee serve`` instances (in-process, own ports) on one cache: the second answers /verify for an image
    the first verified with no registry request; /readyz shows ``sharedCache``, and a third whose cache is unreachable
    answers all the same and stays ready (200) while /readyz says local-only."""
    tag_ref, _ = setup.image("served")

    def config(name: str) -> Path:
        doc = json.loads(json.dumps({"server": server_section(pki)}))
        path = setup.config(**doc)
        return path.rename(tmp_path / name)

    async with running_referee(config("a.yaml"), pki) as a, running_referee(config("b.yaml"), pki) as b:
        assert items_by_key(await a.verify([tag_ref]))[tag_ref]["value"]["allowed"] is True
        setup.proxy.log.clear()
        assert items_by_key(await b.verify([tag_ref]))[tag_ref]["value"]["allowed"] is True
        assert setup.requests() == 0
        status, text = await b.health("/readyz")
        assert status == 200 and json.loads(text)["sharedCache"] == {"state": "up"}

    from tests.support.redis import free_port

    dead = setup.config(
        server=server_section(pki), cache={"shared": setup.shared(url=f"redis://127.0.0.1:{free_port()}")}
    )
    async with running_referee(dead, pki) as c:
        assert items_by_key(await c.verify([tag_ref]))[tag_ref]["value"]["allowed"] is True
        status, text = await c.health("/readyz")
        assert status == 200, text
        body = json.loads(text)
        assert body["ready"] is True and body["sharedCache"]["state"] == "local-only", body


async def test_an_acl_user_with_the_documented_permissions_is_enough(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, hmac_key_file: Path, engines: list[Engine]
) -> None:
    """The ACL line of docs/configuration.md, run as written (password and prefix substituted) on a server whose
    default user needs a password: Referee, logging in with ``usernameFile`` and ``passwordFile``, shares verdicts,
    takes and releases leases and never goes local-only."""
    text = (REPO / "docs" / "configuration.md").read_text()
    match = re.search(r"`ACL SETUSER referee (.+?)`", text, re.DOTALL)
    assert match is not None
    with RedisServer(password="admin-secret") as redis:
        setup = Setup(referrers_proxy, signed_set, tmp_path, redis, hmac_key_file)
        rules = match.group(1).replace(">password", ">cache-secret").replace("referee:*", f"{setup.prefix}*").split()
        assert redis.client().execute_command("ACL", "SETUSER", "referee", *rules) in (b"OK", "OK", True)
        (tmp_path / "username").write_text("referee\n")
        (tmp_path / "password").write_text("cache-secret\n")
        files = {"usernameFile": str(tmp_path / "username"), "passwordFile": str(tmp_path / "password")}
        tag_ref, digest_ref = setup.image("acl")
        first = Engine(load_config(setup.config(shared=setup.shared(**files))))
        engines.append(first)
        errors = {op: metric("referee_shared_cache_errors_total", operation=op) for op in ("get", "set", "lease")}
        assert allowed(await verify(first, tag_ref)) and allowed(await verify(first, digest_ref))
        assert first.shared_status() == {"state": "up"}
        assert errors == {op: metric("referee_shared_cache_errors_total", operation=op) for op in errors}
        assert not list(redis.client().scan_iter(f"{setup.prefix}v1:lease:*"))  # released by the script
        assert list(redis.client().scan_iter(f"{setup.prefix}v1:verdict:*"))
        setup.proxy.log.clear()
        second = Engine(load_config(setup.config(shared=setup.shared(**files))))
        engines.append(second)
        assert allowed(await verify(second, tag_ref))
        assert setup.requests() == 0
        assert second.shared_status() == {"state": "up"}

        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-password\n")
        refused = Engine(load_config(setup.config(shared=setup.shared(**{**files, "passwordFile": str(wrong)}))))
        engines.append(refused)
        assert allowed(await verify(refused, tag_ref))
        status = refused.shared_status()
        assert status is not None and status["state"] == "local-only", status
        assert "not-the-password" not in json.dumps(status)


async def test_a_reload_keeps_or_replaces_the_shared_cache_client(setup: Setup, engines: list[Engine]) -> None:
    """A reload that leaves ``cache.shared`` alone keeps the client (and its connections); one that changes it
    connects a new one and closes the old with the old runtime; one that removes it goes back to local caching."""
    limits = {"verificationTimeout": "1s"}
    engine = Engine(load_config(setup.config(limits=limits)))
    engines.append(engine)
    first = engine.shared
    assert isinstance(first, RedisSharedCache)
    engine.swap(load_config(setup.config(limits=limits, key_file=setup.signed.other_key_file)))
    assert engine.shared is first
    engine.swap(load_config(setup.config(limits=limits, shared=setup.shared(keyPrefix=f"{setup.prefix}b:"))))
    assert engine.shared is not first and engine.shared is not None
    _, ref = setup.image("reload")
    assert allowed(await verify(engine, ref))
    assert list(setup.redis.client().scan_iter(f"{setup.prefix}b:v1:verdict:*"))
    engine.swap(load_config(setup.config(limits=limits, cache={})))
    assert engine.shared is None and engine.shared_status() is None
    await asyncio.gather(*list(engine._retired))
    assert first._closed
