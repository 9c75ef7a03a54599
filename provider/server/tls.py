"""Serving TLS with hot reload: TLS 1.3 only, client certificates required and verified against the
Gatekeeper CA unless mutual TLS is *explicitly* disabled (and then loudly logged).

Reload works by handing every new handshake the newest context through the SNI callback, which OpenSSL
calls for every ClientHello (with or without SNI), so the listening socket never restarts.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509

from provider import metrics
from provider.config import TLSConfig
from provider.errors import ConfigError
from provider.files import read_regular

log = structlog.get_logger("referee.tls")
MAX_TLS_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Loaded:
    context: ssl.SSLContext
    fingerprint: str


def _files(cfg: TLSConfig) -> list[str]:
    return [p for p in (cfg.cert_file, cfg.key_file, cfg.client_ca_file) if p]


def _fingerprint(cfg: TLSConfig) -> str:
    h = hashlib.sha256(repr(cfg).encode())
    for path in _files(cfg):
        try:
            h.update(read_regular(Path(path), MAX_TLS_FILE_BYTES))
        except OSError as exc:
            h.update(f"unreadable:{exc}".encode())
    return h.hexdigest()


def build_server_context(cfg: TLSConfig) -> ssl.SSLContext:
    """Build the serving context or raise ConfigError naming what is wrong."""
    problems: list[str] = []
    if not cfg.cert_file or not cfg.key_file:
        problems.append("server.tls: certFile and keyFile are required (Referee serves HTTPS only)")
    if cfg.client_auth == "require" and not cfg.client_ca_file:
        problems.append(
            "server.tls.clientCaFile: required to verify Gatekeeper's client certificate "
            "(set clientAuth: disabled to turn mutual TLS off explicitly)"
        )
    for path in _files(cfg):
        try:
            read_regular(Path(path), 0)
        except OSError as exc:  # OpenSSL would block forever opening a FIFO
            problems.append(f"server.tls: cannot read {path}: {exc.strerror or exc}")
    if problems:
        raise ConfigError(problems)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"server.tls.certFile/keyFile: cannot load the serving certificate: {exc}"]) from None
    if cfg.client_auth == "require":
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=str(cfg.client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"server.tls.clientCaFile: cannot load the client CA: {exc}"]) from None
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def publish_expiry(cfg: TLSConfig) -> None:
    """Set ``referee_tls_certificate_expiration_timestamp_seconds`` for every certificate in the serving chain
    and in the client-CA bundle in force (replacing the previous set)."""
    metrics.CERTIFICATE_EXPIRY.clear()
    files = [("serving", cfg.cert_file)]
    if cfg.client_auth == "require":
        files.append(("client_ca", cfg.client_ca_file))
    for role, path in files:
        if not path:
            continue
        try:
            certificates = x509.load_pem_x509_certificates(Path(path).read_bytes())
        except (OSError, ValueError) as exc:  # the context loaded it, so this is a race with a rewrite
            log.warning("certificate_expiry_unknown", certificate=role, error=type(exc).__name__)
            continue
        for cert in certificates:
            subject = cert.subject.rfc4514_string()[:128]
            metrics.CERTIFICATE_EXPIRY.labels(role, subject, format(cert.serial_number, "x")).set(
                cert.not_valid_after_utc.timestamp()
            )


def _count_rejection() -> None:
    metrics.TLS_RELOADS.labels("rejected").inc()
    metrics.TLS_LAST_RELOAD_OK.set(0)


class ReloadingTLS:
    """Owns the listening context and swaps in rebuilt contexts when the files or settings change."""

    def __init__(self, cfg: TLSConfig) -> None:
        self._cfg = cfg
        self._current = _Loaded(build_server_context(cfg), _fingerprint(cfg))
        self._rejected: str | None = None
        self.listening_context = build_server_context(cfg)
        self.listening_context.sni_callback = self._select
        publish_expiry(cfg)
        metrics.TLS_LAST_RELOAD_OK.set(1)
        if cfg.client_auth == "disabled":
            log.warning("mtls_disabled", reason="server.tls.clientAuth is disabled: any client may call Referee")

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self._current.context

    @property
    def config(self) -> TLSConfig:
        return self._cfg

    def maybe_reload(self, cfg: TLSConfig) -> bool:
        """Rebuild when settings or file contents changed; keep the old context if the new one fails."""
        fingerprint = _fingerprint(cfg)
        if fingerprint == self._current.fingerprint:
            self._rejected = None
            metrics.TLS_LAST_RELOAD_OK.set(1)
            return False
        if fingerprint == self._rejected:
            return False
        self._rejected = fingerprint
        if cfg.client_auth != self._cfg.client_auth:
            # OpenSSL keeps the listening context's verify mode when the SNI callback swaps contexts, so a
            # change of clientAuth would not take effect on live handshakes: refuse it until a restart.
            log.error(
                "tls_reload_rejected",
                problems=[f"server.tls.clientAuth changed to {cfg.client_auth}: restart Referee to apply it"],
                client_auth=self._cfg.client_auth,
            )
            _count_rejection()
            return False
        try:
            context = build_server_context(cfg)
        except ConfigError as exc:
            log.error("tls_reload_rejected", problems=exc.problems)
            _count_rejection()
            return False
        self._cfg = cfg
        self._current = _Loaded(context, fingerprint)
        self._rejected = None
        metrics.TLS_RELOADS.labels("applied").inc()
        metrics.TLS_LAST_RELOAD_OK.set(1)
        publish_expiry(cfg)
        log.info("tls_reloaded", client_auth=cfg.client_auth)
        return True
