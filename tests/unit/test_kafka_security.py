"""Kafka security settings (RINGS_KAFKA_*): what reaches aiokafka and Faust, and the errors.

The broker side (SASL/SCRAM on the real broker) is tests/integration/test_security.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streams.config import KafkaSettings
from streams.errors import KafkaConfigError

SASL = {"RINGS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RINGS_KAFKA_USERNAME": "engine"}


def settings(**env: str) -> KafkaSettings:
    return KafkaSettings.from_env(env={"RINGS_BROKER": "kafka-1:9093", **env})


def error(**env: str) -> str:
    with pytest.raises(KafkaConfigError) as e:
        settings(**env)
    return str(e.value)


# ------------------------------------------------------------------------------ SASL

def test_plaintext_by_default_adds_nothing() -> None:
    s = settings()
    assert s.broker == "kafka-1:9093"
    assert s.client_options == {}
    assert s.faust_credentials() is None
    assert settings(RINGS_KAFKA_SECURITY_PROTOCOL="plaintext").client_options == {}


def test_scram_from_a_password_file(tmp_path: Path) -> None:
    pw = tmp_path / "kafka-password"
    pw.write_text("s3cret pass\n")                  # a trailing newline is not part of it
    s = settings(**SASL, RINGS_KAFKA_SASL_MECHANISM="scram-sha-512",
                 RINGS_KAFKA_PASSWORD_FILE=str(pw))
    assert s.client_options == {"security_protocol": "SASL_PLAINTEXT",
                                "sasl_mechanism": "SCRAM-SHA-512",
                                "sasl_plain_username": "engine",
                                "sasl_plain_password": "s3cret pass"}


def test_the_mechanism_defaults_to_scram_sha_256() -> None:
    s = settings(**SASL, RINGS_KAFKA_PASSWORD="pw")
    assert s.client_options["sasl_mechanism"] == "SCRAM-SHA-256"


def test_faust_gets_the_same_credentials_as_aiokafka() -> None:
    """Faust maps broker_credentials to its consumer's and producer's aiokafka options
    (which also create its topics): they must equal the raw clients' options."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = settings(**SASL, RINGS_KAFKA_PASSWORD="pw")
    auth = dict(credentials_to_aiokafka_auth(s.faust_credentials()))
    assert auth.pop("ssl_context") is None
    assert auth == s.client_options

    tls = settings(**{**SASL, "RINGS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
                   RINGS_KAFKA_PASSWORD="pw")
    assert dict(credentials_to_aiokafka_auth(tls.faust_credentials())) == tls.client_options

    only_tls = settings(RINGS_KAFKA_SECURITY_PROTOCOL="SSL")
    assert dict(credentials_to_aiokafka_auth(only_tls.faust_credentials())) \
        == only_tls.client_options


def test_the_password_is_never_shown(tmp_path: Path) -> None:
    s = settings(**SASL, RINGS_KAFKA_PASSWORD="hunter2-secret")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in s.describe_security()
    assert s.describe_security() == "SASL_PLAINTEXT SCRAM-SHA-256 as 'engine'"
    assert "hunter2" not in repr(s.faust_credentials())


@pytest.mark.parametrize("env, message", [
    ({"RINGS_KAFKA_SECURITY_PROTOCOL": "SASL"},
     "RINGS_KAFKA_SECURITY_PROTOCOL='SASL' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
     "SASL_SSL"),
    ({"RINGS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RINGS_KAFKA_PASSWORD": "pw"},
     "SASL_PLAINTEXT needs a user: set RINGS_KAFKA_USERNAME"),
    (SASL, "SASL needs a password: set RINGS_KAFKA_PASSWORD_FILE"),
    ({**SASL, "RINGS_KAFKA_PASSWORD": "pw", "RINGS_KAFKA_SASL_MECHANISM": "GSSAPI"},
     "RINGS_KAFKA_SASL_MECHANISM='GSSAPI' is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN"),
    ({"RINGS_KAFKA_USERNAME": "engine", "RINGS_KAFKA_PASSWORD": "pw"},
     "RINGS_KAFKA_USERNAME, RINGS_KAFKA_PASSWORD set, but RINGS_KAFKA_SECURITY_PROTOCOL is "
     "PLAINTEXT: set it to SASL_PLAINTEXT or SASL_SSL"),
    ({**SASL, "RINGS_KAFKA_PASSWORD": "pw", "RINGS_KAFKA_CA_FILE": "/etc/ca.pem"},
     "RINGS_KAFKA_CA_FILE set, but RINGS_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT: set it "
     "to SSL or SASL_SSL"),
    ({**SASL, "RINGS_KAFKA_PASSWORD_FILE": "/nonexistent/kafka-password"},
     "RINGS_KAFKA_PASSWORD_FILE: no such file: /nonexistent/kafka-password"),
])
def test_invalid_settings_are_refused_clearly(env: dict[str, str], message: str) -> None:
    assert message in error(**env)


def test_one_password_source_only(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file")
    assert "not both" in error(**SASL, RINGS_KAFKA_PASSWORD="direct",
                               RINGS_KAFKA_PASSWORD_FILE=str(pw))


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("\n")
    assert error(**SASL, RINGS_KAFKA_PASSWORD_FILE=str(pw)) \
        == f"RINGS_KAFKA_PASSWORD_FILE {pw} is empty"


# ------------------------------------------------------------------------------ TLS

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool,
          dns: str | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(hours=1))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for `localhost` and a client certificate it signed, and
    a second CA that signed nothing here."""
    d = tmp_path_factory.mktemp("pki")
    out: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("rings test CA", ca_key, "rings test CA", ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("another CA", other_key, "another CA", other_key, ca=True)
    for name, cn, dns in (("server", "localhost", "localhost"), ("client", "engine", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, "rings test CA", ca_key, ca=False, dns=dns)
        out[f"{name}_cert"] = d / f"{name}.pem"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}_key"] = d / f"{name}.key"
        out[f"{name}_key"].write_bytes(_pem_key(key))
    out["ca"] = d / "ca.pem"
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["other_ca"] = d / "other-ca.pem"
    out["other_ca"].write_bytes(other.public_bytes(serialization.Encoding.PEM))
    return out


def tls_env(pki: dict[str, Path], protocol: str = "SSL", ca: str = "ca") -> dict[str, str]:
    return {"RINGS_KAFKA_SECURITY_PROTOCOL": protocol, "RINGS_KAFKA_CA_FILE": str(pki[ca]),
            "RINGS_KAFKA_CERT_FILE": str(pki["client_cert"]),
            "RINGS_KAFKA_KEY_FILE": str(pki["client_key"])}


def test_tls_settings_build_a_verifying_ssl_context(pki: dict[str, Path]) -> None:
    s = settings(**tls_env(pki))
    ctx = s.client_options["ssl_context"]
    assert s.client_options["security_protocol"] == "SSL"
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] \
        == [((("commonName", "rings test CA"),),)]
    assert s.tls_files == {"ca": str(pki["ca"]), "cert": str(pki["client_cert"]),
                           "key": str(pki["client_key"])}


def test_sasl_ssl_carries_both(pki: dict[str, Path]) -> None:
    s = settings(**tls_env(pki, "SASL_SSL"), RINGS_KAFKA_USERNAME="engine",
                 RINGS_KAFKA_PASSWORD="pw")
    assert s.client_options["security_protocol"] == "SASL_SSL"
    assert s.client_options["sasl_plain_username"] == "engine"
    assert isinstance(s.client_options["ssl_context"], ssl.SSLContext)
    assert s.faust_credentials().protocol.value == "SASL_SSL"


def test_ssl_without_a_ca_file_uses_the_system_cas() -> None:
    s = settings(RINGS_KAFKA_SECURITY_PROTOCOL="SSL")
    assert isinstance(s.client_options["ssl_context"], ssl.SSLContext)
    assert s.tls_files == {}


def test_a_missing_ca_file_is_refused_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    assert error(RINGS_KAFKA_SECURITY_PROTOCOL="SSL", RINGS_KAFKA_CA_FILE=str(missing)) \
        == f"RINGS_KAFKA_CA_FILE: no such file: {missing}"


def test_a_file_that_is_no_certificate_is_refused_clearly(tmp_path: Path,
                                                            pki: dict[str, Path]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    msg = error(RINGS_KAFKA_SECURITY_PROTOCOL="SSL", RINGS_KAFKA_CA_FILE=str(junk))
    assert msg.startswith(f"cannot build the TLS context from ca {junk}: ")
    # a key that does not belong to the certificate
    msg = error(**{**tls_env(pki), "RINGS_KAFKA_KEY_FILE": str(pki["server_key"])})
    assert msg.startswith("cannot build the TLS context from ca ")


def test_a_key_needs_its_certificate(pki: dict[str, Path]) -> None:
    env = tls_env(pki)
    del env["RINGS_KAFKA_CERT_FILE"]
    assert error(**env) == "RINGS_KAFKA_KEY_FILE set without RINGS_KAFKA_CERT_FILE"


def _handshake(client_ctx: ssl.SSLContext, pki: dict[str, Path]) -> str:
    """A mutual-TLS handshake against a local server with the `localhost` certificate that
    requires a client certificate signed by the test CA; the client's CN as the server saw
    it."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    server_ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        seen.extend(v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName")
        writer.close()

    async def go() -> None:
        server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"), 10)
            await asyncio.sleep(0)
            writer.close()
            for _ in range(100):            # the server's callback runs after the handshake
                if seen:
                    break
                await asyncio.sleep(0.01)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(go())
    return seen[0] if seen else ""


def test_the_context_verifies_the_broker_and_presents_the_client_certificate(
        pki: dict[str, Path]) -> None:
    ctx = settings(**tls_env(pki)).client_options["ssl_context"]
    assert _handshake(ctx, pki) == "engine"

    wrong_ca = settings(**tls_env(pki, ca="other_ca")).client_options["ssl_context"]
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(wrong_ca, pki)
