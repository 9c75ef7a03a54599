"""Which credentials a registry request carries: chosen per registry and repository.

Sources, each a set of image patterns (:mod:`provider.registry.matching`):

1. ``registries.hosts[]`` credentials (pattern: the host);
2. ``registries.pullSecrets``, in the order listed;
3. ``registries.dockerConfig``;
4. ``registries.credentialProviders``, in the order of the ``CredentialProviderConfig`` (pattern: the most
   specific matching ``matchImages`` entry).

Among the patterns matching an image, the **most specific wins**: a longer repository path first, then fewer
wildcard host labels; the order above breaks ties. A provider chosen this way is run (or answered from its
cache); when its answer has no key matching the image, the next candidate is tried. When nothing matches,
the request is anonymous. A provider failure is an error for the request, never a fallback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

from provider.config import Credentials, RegistriesConfig
from provider.reference import ImageRef
from provider.registry.credential_providers import ExecProvider
from provider.registry.matching import ImagePattern, parse_pattern, split_host

MAX_PLANS = 4096


@dataclass(frozen=True, slots=True)
class _Candidate:
    pattern: ImagePattern
    rank: int
    credentials: Credentials | None = None
    provider: ExecProvider | None = None


class CredentialStore:
    """Chooses credentials for each request (one store per registry client, i.e. per configuration)."""

    def __init__(self, config: RegistriesConfig, clock: Callable[[], float] = time.monotonic) -> None:
        static: list[_Candidate] = []
        for host in config.hosts:
            if host.credentials is not None:
                static.append(_Candidate(_host_pattern(host.host), len(static), credentials=host.credentials))
        for entry in config.credential_entries:
            static.append(_Candidate(entry.pattern, len(static), credentials=entry.credentials))
        self._static = tuple(static)
        providers = config.credential_providers
        self.providers: tuple[ExecProvider, ...] = ()
        if providers is not None:
            self.providers = tuple(
                ExecProvider(spec, providers.exec_timeout, providers.max_output_bytes, clock=clock)
                for spec in providers.providers
            )
        self._plans: LRUCache[tuple[str, str], tuple[_Candidate, ...]] = LRUCache(maxsize=MAX_PLANS)

    def plan(self, registry: str, repository: str) -> tuple[_Candidate, ...]:
        """The candidates for an image, most specific first."""
        key = (registry, repository)
        found = self._plans.get(key)
        if found is not None:
            return found
        candidates = [c for c in self._static if c.pattern.matches(registry, repository)]
        for i, provider in enumerate(self.providers):
            pattern = provider.matches(registry, repository)
            if pattern is not None:
                candidates.append(_Candidate(pattern, len(self._static) + i, provider=provider))
        candidates.sort(key=lambda c: (-c.pattern.specificity[0], -c.pattern.specificity[1], c.rank))
        plan = tuple(candidates)
        self._plans[key] = plan
        return plan

    async def lookup(self, ref: ImageRef) -> Credentials | None:
        """Credentials for a request about ``ref``, or ``None`` (anonymous). Raises the provider's error."""
        for candidate in self.plan(ref.registry, ref.repository):
            if candidate.provider is None:
                return candidate.credentials
            credentials = await candidate.provider.credentials(ref.registry, ref.repository)
            if credentials is not None:
                return credentials
        return None


def _host_pattern(host: str) -> ImagePattern:
    try:
        return parse_pattern(host)
    except ValueError:  # not a valid pattern: it can only ever equal itself
        name, port = split_host(host)
        return ImagePattern(text=host, labels=tuple(name.lower().split(".")), port=port, path=())
