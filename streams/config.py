"""Settings shared by every command that talks to Kafka.

One place reads the environment, so the worker, publish, tail, simulate and bench all agree
on the broker and on topic names (`RINGS_TOPIC_PREFIX` lets several engines share a cluster),
and on how to authenticate (`RINGS_KAFKA_*`: SASL/SCRAM and TLS, see `security_from_env`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError, KafkaConfigError

DEFAULT_BROKER = "127.0.0.1:9092"

# Contract topics (CONTRACTS.md) and internal ones, before the prefix.
SIGHTINGS = "sightings"
SIGHTINGS_DLQ = "sightings-dlq"
WATCHLIST = "watchlist"
ALERTS = "alerts"
BY_SUBJECT = "rings-by-subject"       # internal: batch envelopes, partitioned by subject key
BY_SITE = "rings-by-site"             # internal: vehicle sightings, partitioned by site (convoy)
BY_PAIR = "rings-by-pair"             # internal: co-passes, partitioned by pair of vehicles
ENGINE_DLQ = "rings-engine-dlq"       # internal: envelopes the engine failed on (a bug)
# Lockdown plans (CONTRACTS.md §6)
PLAN_COMMANDS = "plan-commands"       # in: activate / stand-down
PLAN_ACKS = "plan-acks"               # in: acknowledgements and closures from the sites
PLAN_ORDERS = "plan-orders"           # out: one order per site and activation
PLAN_STATUS = "plan-status"           # out: an activation's status on every change
PLAN_AUDIT = "plan-audit"             # out, compacted: who activated / stood down, and why
PLAN_DLQ = "plan-dlq"                 # out: refused commands and acks, with the reason
PLAN_INBOX = "rings-plan-inbox"       # internal: every plan input, in one partition
PSEUDO_WATCHLIST = "rings-watchlist"  # internal, compacted: the watchlist keyed by pseudonyms
RULES = "rules"                       # compacted: the rule set workers run (rings rules push)
RULES_AUDIT = "rules-audit"           # compacted: who pushed which rule set, when, why


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
DEFAULT_SASL_MECHANISM = "SCRAM-SHA-256"


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    broker: str = DEFAULT_BROKER
    prefix: str = ""
    # Extra aiokafka options (security): every client passes them on. Holds the password,
    # hence out of repr.
    client_options: dict = field(default_factory=dict, repr=False)
    # The TLS files the ssl_context was built from (ca, cert, key): a child process can
    # build its own context from them (an SSLContext does not cross a process boundary).
    tls_files: dict = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return self.prefix + name

    @property
    def security_protocol(self) -> str:
        return self.client_options.get("security_protocol", "PLAINTEXT")

    def faust_credentials(self) -> Any:
        """The same security for a Faust app (`broker_credentials`), or None for PLAINTEXT.
        Faust hands them to its consumer and producer, whose clients also create its
        topics."""
        o = self.client_options
        protocol = self.security_protocol
        if protocol == "PLAINTEXT":
            return None
        import faust
        if protocol == "SSL":
            return faust.SSLCredentials(o["ssl_context"])
        # SASL_SSL when an ssl_context is given (faust derives the protocol from it).
        return faust.SASLCredentials(username=o["sasl_plain_username"],
                                     password=o["sasl_plain_password"],
                                     mechanism=o["sasl_mechanism"],
                                     ssl_context=o.get("ssl_context"))

    def portable(self) -> "KafkaSettings":
        """These settings without the SSLContext, which does not cross a process boundary
        (see `restored`)."""
        return KafkaSettings(self.broker, self.prefix,
                             {k: v for k, v in self.client_options.items()
                              if k != "ssl_context"}, dict(self.tls_files))

    def restored(self) -> "KafkaSettings":
        """`portable()` settings made whole again in the process that received them."""
        if not self.security_protocol.endswith("SSL") or "ssl_context" in self.client_options:
            return self
        return KafkaSettings(self.broker, self.prefix,
                             {**self.client_options, "ssl_context": ssl_context(self.tls_files)},
                             dict(self.tls_files))

    def describe_security(self) -> str:
        """For messages: protocol, mechanism and user, never the password."""
        o = self.client_options
        out = self.security_protocol
        if "sasl_mechanism" in o:
            out += f" {o['sasl_mechanism']} as {o.get('sasl_plain_username')!r}"
        return out

    @staticmethod
    def from_env(broker: str | None = None, prefix: str | None = None,
                 env: Mapping[str, str] | None = None) -> "KafkaSettings":
        """Broker, prefix and security from the arguments, else the environment. Raises
        KafkaConfigError on invalid or incomplete security settings."""
        env = os.environ if env is None else env
        options, tls_files = security_from_env(env)
        return KafkaSettings(
            broker=broker or env.get("RINGS_BROKER") or DEFAULT_BROKER,
            prefix=prefix if prefix is not None else env.get("RINGS_TOPIC_PREFIX", ""),
            client_options=options,
            tls_files=tls_files,
        )


def env_int(name: str, default: int, env: Mapping[str, str] | None = None, *, low: int = 0,
            high: int | None = None, unit: str = "") -> int:
    """A whole-number worker setting from the environment (RINGS_*), or a ConfigError
    that names it."""
    raw = (env if env is not None else os.environ).get(name, str(default))
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number{unit}, not {raw!r}") from None
    if n < low or (high is not None and n > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {bounds}, not {n}")
    return n


def security_from_env(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """aiokafka's security options from the RINGS_KAFKA_* variables, and the TLS files used.

    RINGS_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    RINGS_KAFKA_SASL_MECHANISM      SCRAM-SHA-256 (default) | SCRAM-SHA-512 | PLAIN
    RINGS_KAFKA_USERNAME            SASL user
    RINGS_KAFKA_PASSWORD_FILE       a file holding the SASL password (preferred), or
    RINGS_KAFKA_PASSWORD            the password itself
    RINGS_KAFKA_CA_FILE             CA bundle (PEM) to verify the broker (default: system CAs)
    RINGS_KAFKA_CERT_FILE           client certificate (PEM), for mutual TLS
    RINGS_KAFKA_KEY_FILE            its private key (PEM), if not in the certificate file

    Settings that the protocol would not use are refused rather than ignored: credentials
    set with PLAINTEXT mean a forgotten protocol, not a wish to send no credentials.
    """
    def get(name: str) -> str | None:
        v = env.get(f"RINGS_KAFKA_{name}")
        return v.strip() if v is not None and v.strip() else None

    protocol = (get("SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaConfigError(f"RINGS_KAFKA_SECURITY_PROTOCOL={get('SECURITY_PROTOCOL')!r}"
                               f" is not one of {', '.join(SECURITY_PROTOCOLS)}")
    sasl = protocol.startswith("SASL_")
    tls = protocol.endswith("SSL")
    sasl_vars = [f"RINGS_KAFKA_{n}" for n in ("SASL_MECHANISM", "USERNAME", "PASSWORD",
                                                "PASSWORD_FILE") if get(n)]
    tls_vars = [f"RINGS_KAFKA_{n}" for n in ("CA_FILE", "CERT_FILE", "KEY_FILE") if get(n)]
    if not sasl and sasl_vars:
        raise KafkaConfigError(f"{', '.join(sasl_vars)} set, but RINGS_KAFKA_SECURITY_PROTOCOL"
                               f" is {protocol}: set it to SASL_PLAINTEXT or SASL_SSL")
    if not tls and tls_vars:
        raise KafkaConfigError(f"{', '.join(tls_vars)} set, but RINGS_KAFKA_SECURITY_PROTOCOL"
                               f" is {protocol}: set it to SSL or SASL_SSL")
    options: dict[str, Any] = {}
    tls_files: dict[str, str] = {}
    if protocol == "PLAINTEXT":
        return options, tls_files
    options["security_protocol"] = protocol
    if sasl:
        mechanism = (get("SASL_MECHANISM") or DEFAULT_SASL_MECHANISM).upper()
        if mechanism not in SASL_MECHANISMS:
            raise KafkaConfigError(f"RINGS_KAFKA_SASL_MECHANISM={get('SASL_MECHANISM')!r} is "
                                   f"not one of {', '.join(SASL_MECHANISMS)}")
        username = get("USERNAME")
        if username is None:
            raise KafkaConfigError(f"{protocol} needs a user: set RINGS_KAFKA_USERNAME")
        options.update(sasl_mechanism=mechanism, sasl_plain_username=username,
                       sasl_plain_password=_password(env, get))
    if tls:
        tls_files = {k: _readable(f"RINGS_KAFKA_{n}", get(n))
                     for k, n in (("ca", "CA_FILE"), ("cert", "CERT_FILE"), ("key", "KEY_FILE"))
                     if get(n)}
        if "key" in tls_files and "cert" not in tls_files:
            raise KafkaConfigError("RINGS_KAFKA_KEY_FILE set without RINGS_KAFKA_CERT_FILE")
        options["ssl_context"] = ssl_context(tls_files)
    return options, tls_files


def ssl_context(tls_files: Mapping[str, str]) -> Any:
    """A client SSLContext (hostname checked) from the files of `security_from_env`."""
    import ssl

    from aiokafka.helpers import create_ssl_context
    try:
        return create_ssl_context(cafile=tls_files.get("ca"), certfile=tls_files.get("cert"),
                                  keyfile=tls_files.get("key"))
    except (ssl.SSLError, OSError, ValueError) as e:
        files = ", ".join(f"{k} {v}" for k, v in tls_files.items()) or "system CAs"
        raise KafkaConfigError(f"cannot build the TLS context from {files}: {e}") from None


def _password(env: Mapping[str, str], get: Any) -> str:
    path, direct = get("PASSWORD_FILE"), env.get("RINGS_KAFKA_PASSWORD") or None
    if path and direct:
        raise KafkaConfigError("set RINGS_KAFKA_PASSWORD_FILE or RINGS_KAFKA_PASSWORD, "
                               "not both")
    if path:
        try:
            with open(_readable("RINGS_KAFKA_PASSWORD_FILE", path), encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise KafkaConfigError(f"RINGS_KAFKA_PASSWORD_FILE {path}: cannot read it "
                                   f"({type(e).__name__})") from None
        if not password:
            raise KafkaConfigError(f"RINGS_KAFKA_PASSWORD_FILE {path} is empty")
        return password
    if not direct:
        raise KafkaConfigError("SASL needs a password: set RINGS_KAFKA_PASSWORD_FILE (a "
                               "secret file) or RINGS_KAFKA_PASSWORD")
    return direct


def _readable(var: str, path: str | None) -> str:
    assert path is not None
    if not os.path.isfile(path):
        raise KafkaConfigError(f"{var}: no such file: {path}")
    if not os.access(path, os.R_OK):
        raise KafkaConfigError(f"{var}: cannot read {path} (permissions)")
    return path
