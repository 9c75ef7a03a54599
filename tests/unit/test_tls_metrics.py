"""TLS metrics: certificate expiry of the serving chain and the client-CA bundle, and reload results."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trustme
from cryptography import x509

from provider import metrics
from provider.config import TLSConfig
from provider.server.tls import ReloadingTLS

EXPIRY = "referee_tls_certificate_expiration_timestamp_seconds"


def _expiry() -> dict[tuple[str, str], float]:
    """(certificate, serial) -> value for every exposed series."""
    out = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == EXPIRY:
                out[(sample.labels["certificate"], sample.labels["serial"])] = sample.value
    return out


def _sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def _serial_and_end(pem: bytes) -> tuple[str, float]:
    cert = x509.load_pem_x509_certificate(pem)
    return format(cert.serial_number, "x"), cert.not_valid_after_utc.timestamp()


def _issue(ca: trustme.CA, directory: Path, days: int) -> bytes:
    leaf = ca.issue_cert("127.0.0.1", not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    return leaf.cert_chain_pems[0].bytes()


def test_expiry_follows_the_files_in_force_and_rejections_are_counted(tmp_path: Path) -> None:
    serving_ca, client_ca_1, client_ca_2 = trustme.CA(), trustme.CA(), trustme.CA()
    first = _issue(serving_ca, tmp_path, 30)
    bundle = client_ca_1.cert_pem.bytes() + client_ca_2.cert_pem.bytes()  # a CA bundle during a rotation
    (tmp_path / "ca.crt").write_bytes(bundle)
    cfg = TLSConfig(
        cert_file=str(tmp_path / "tls.crt"), key_file=str(tmp_path / "tls.key"), client_ca_file=str(tmp_path / "ca.crt")
    )
    applied = _sample("referee_tls_reloads_total", result="applied") or 0.0
    rejected = _sample("referee_tls_reloads_total", result="rejected") or 0.0

    tls = ReloadingTLS(cfg)
    cas = [_serial_and_end(ca.cert_pem.bytes()) for ca in (client_ca_1, client_ca_2)]
    assert _expiry() == {("serving", _serial_and_end(first)[0]): _serial_and_end(first)[1]} | {
        ("client_ca", serial): end for serial, end in cas
    }
    assert _sample("referee_tls_last_reload_successful") == 1

    second = _issue(serving_ca, tmp_path, 5)  # renewed: the old serial disappears
    assert tls.maybe_reload(cfg)
    assert _expiry()[("serving", _serial_and_end(second)[0])] == _serial_and_end(second)[1]
    assert ("serving", _serial_and_end(first)[0]) not in _expiry()
    assert _sample("referee_tls_reloads_total", result="applied") == applied + 1

    good_cert = (tmp_path / "tls.crt").read_bytes()
    (tmp_path / "tls.crt").write_text("not a certificate\n")
    before = _expiry()
    assert not tls.maybe_reload(cfg)
    assert not tls.maybe_reload(cfg)  # the same bad files count once
    assert _sample("referee_tls_reloads_total", result="rejected") == rejected + 1
    assert _sample("referee_tls_last_reload_successful") == 0
    assert _expiry() == before  # the certificate in force still serves

    (tmp_path / "tls.crt").write_bytes(good_cert)  # put back: the files on disk are the ones serving again
    assert not tls.maybe_reload(cfg)
    assert _sample("referee_tls_last_reload_successful") == 1


def test_no_client_ca_series_without_mutual_tls(tmp_path: Path) -> None:
    _issue(trustme.CA(), tmp_path, 30)
    ReloadingTLS(
        TLSConfig(cert_file=str(tmp_path / "tls.crt"), key_file=str(tmp_path / "tls.key"), client_auth="disabled")
    )
    assert {certificate for certificate, _ in _expiry()} == {"serving"}
