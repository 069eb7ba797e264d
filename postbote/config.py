"""Configuration: one TOML file, validated into typed, frozen settings at start.

Every key has a default (the development instance of DESIGN.md), so no file at
all is a valid configuration. A wrong value stops the start with one line that
names the key and what was expected; see ``docs/config.md`` for every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class ListenAddress:
    """One ``host:port`` a listener binds to (``[::1]:25`` for IPv6)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str, key: str) -> ListenAddress:
    """Parse ``host:port`` or ``[v6]:port``; the error names ``key``."""
    if not isinstance(value, str):
        raise ConfigError(f"config: {key} must be a \"host:port\" string, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
        ipaddress.ip_address(host)
    except ValueError:
        port = -1
    if not sep or not 0 <= port <= 65535:
        raise ConfigError(f"config: {key} must be \"IP:port\" (e.g. \"0.0.0.0:25\" or \"[::]:25\"), got {value!r}")
    return ListenAddress(host, port)


def _check(lo: float | None = None, hi: float | None = None, choices: tuple[str, ...] = ()) -> dict:
    return {"lo": lo, "hi": hi, "choices": choices}


def _listen(*addrs: str) -> Any:
    return field(default=tuple(parse_listen(a, "default") for a in addrs), metadata={"listen": True})


def _opt(default: Any, **check: Any) -> Any:
    return field(default=default, metadata=_check(**check))


@dataclass(frozen=True)
class DnsSettings:
    # Empty: the system resolver (/etc/resolv.conf). Tests and staging point
    # every lookup at a local server, e.g. ["127.0.0.1:5353"].
    nameservers: tuple[str, ...] = ()
    timeout: float = _opt(5.0, lo=0.1, hi=120)


@dataclass(frozen=True)
class TlsSettings:
    # Empty paths: a self-signed certificate made on first start in DATA/tls/.
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class ServiceSettings:
    """The listen addresses of every protocol; an empty list turns one off."""

    smtp: tuple[ListenAddress, ...] = _listen("127.0.0.1:2525")
    submission: tuple[ListenAddress, ...] = _listen("127.0.0.1:2587")
    submissions: tuple[ListenAddress, ...] = _listen("127.0.0.1:2465")
    lmtp: tuple[ListenAddress, ...] = _listen()
    imap: tuple[ListenAddress, ...] = _listen("127.0.0.1:2143")
    imaps: tuple[ListenAddress, ...] = _listen("127.0.0.1:2993")
    pop3: tuple[ListenAddress, ...] = _listen("127.0.0.1:2110")
    pop3s: tuple[ListenAddress, ...] = _listen("127.0.0.1:2995")
    managesieve: tuple[ListenAddress, ...] = _listen("127.0.0.1:4190")  # production 4190
    http: tuple[ListenAddress, ...] = _listen("127.0.0.1:8080")
    https: tuple[ListenAddress, ...] = _listen()  # production 443


@dataclass(frozen=True)
class LimitSettings:
    max_message_size: int = _opt(50 * 1024 * 1024, lo=1024, hi=2**40)
    max_recipients: int = _opt(100, lo=1, hi=100_000)
    max_connections: int = _opt(2000, lo=1, hi=1_000_000)
    max_connections_per_ip: int = _opt(50, lo=1, hi=1_000_000)
    max_errors: int = _opt(10, lo=1, hi=1000)
    max_line_length: int = _opt(4096, lo=512, hi=1_048_576)
    # Authentication failures allowed per IP / per account before a lockout.
    auth_failures_per_ip: int = _opt(10, lo=1, hi=100_000)
    auth_failures_per_account: int = _opt(20, lo=1, hi=100_000)
    auth_lockout_seconds: int = _opt(900, lo=1, hi=86400 * 7)
    # RFC 5321 §4.5.3.2: the server waits at least 5 minutes for a command.
    command_timeout: int = _opt(300, lo=1, hi=86400)
    data_timeout: int = _opt(600, lo=1, hi=86400)
    # RFC 9051 §5.4: an idle IMAP client may be logged out after 30 minutes.
    imap_idle_timeout: int = _opt(1800, lo=60, hi=86400)
    # 0: no storage quota for new accounts.
    default_quota: int = _opt(0, lo=0, hi=2**50)


@dataclass(frozen=True)
class LogSettings:
    format: str = _opt("logfmt", choices=("logfmt", "json"))
    level: str = _opt("info", choices=("debug", "info", "warning", "error"))


# -- outbound queue --
@dataclass(frozen=True)
class OutboundSettings:
    """Delivery of our users' mail to other servers (the outbound queue)."""

    # Send queued mail at all. The development instance (no config file) leaves it off, like
    # mox's localserve: a dev server never sends mail off the machine; its mail stays queued.
    enabled: bool = True
    # The port of remote MX hosts (RFC 5321: 25); tests and staging point it elsewhere.
    port: int = _opt(25, lo=1, hi=65535)
    # A relay ("smarthost") for hosts that cannot send on port 25; empty: MX routing.
    smarthost: str = ""
    smarthost_port: int = _opt(587, lo=1, hi=65535)
    smarthost_user: str = ""
    smarthost_password: str = ""
    smarthost_tls: str = _opt("starttls", choices=("starttls", "implicit", "none"))
    # Waits between attempts ("30s", "5m", "2h", "1d"); the last one repeats.
    retry_schedule: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "2h", "4h")
    delay_notice_after: int = _opt(4 * 3600, lo=0, hi=86400 * 30)  # 0: no delay notices
    give_up_after: int = _opt(5 * 86400, lo=1, hi=86400 * 60)
    max_connections: int = _opt(50, lo=1, hi=10_000)
    connections_per_destination: int = _opt(4, lo=1, hi=1000)
    messages_per_connection: int = _opt(100, lo=1, hi=100_000)
    # RFC 5321 §4.5.3.2: greeting 5 min, MAIL/RCPT 5 min, DATA 2 min, a data block
    # 3 min, the final dot 10 min. Connecting is not in the RFC: 30 s.
    connect_timeout: int = _opt(30, lo=1, hi=3600)
    command_timeout: int = _opt(300, lo=1, hi=3600)
    data_timeout: int = _opt(600, lo=1, hi=3600)
    # How often the queue looks for due entries, and how long a lease keeps other workers off an entry.
    poll_interval: float = _opt(1.0, lo=0.01, hi=3600)
    lease_seconds: int = _opt(1200, lo=1, hi=86400)
    # Extra trusted CA certificates (PEM) for MTA-STS and verified TLS: for tests and private CAs.
    tls_ca_file: str = ""
    # The HTTPS port for MTA-STS policies (RFC 8461: 443); tests point it elsewhere.
    mta_sts_port: int = _opt(443, lo=1, hi=65535)
    dane: bool = True
    mta_sts: bool = True


# -- mail authentication --
@dataclass(frozen=True)
class MailAuthSettings:
    """Inbound SPF, DKIM, DMARC, ARC (postbote/mailauth/)."""

    # false: no checks at all, no Authentication-Results (e.g. behind a filtering gateway).
    enabled: bool = True
    # true: apply the sender domain's DMARC policy (reject → 550, quarantine → Junk);
    # false: only record and report the results, for every domain.
    enforce: bool = True
    # Our domains whose recipients only get reports, never DMARC refusals (while enforce is true).
    report_only_domains: tuple[str, ...] = ()
    # Forwarders whose word we take when DMARC broke on the way: domains of ARC sealers
    # (a passing chain sealed by them) or IP addresses/networks of the connecting host.
    trusted_forwarders: tuple[str, ...] = ()
    # Local overrides: From domains whose DMARC failures are never refused (only reported).
    never_refuse: tuple[str, ...] = ()
    # From domains treated as p=reject whatever they publish (e.g. our own domains).
    always_reject: tuple[str, ...] = ()
    # Record every DMARC evaluation for the aggregate reports (RFC 7489 §7.2).
    record_results: bool = True


# -- operations --
@dataclass(frozen=True)
class HttpSettings:
    """The web server: admin interface, API, metrics, autoconfig (postbote/web/)."""

    # Plain-HTTP requests (listen.http) other than ACME challenges and /metrics, /healthz, /readyz are
    # redirected to https:// — for production, where listen.http is port 80 and listen.https 443.
    redirect_to_https: bool = False
    # The admin interface and the JSON API (false: only metrics, health and autoconfig).
    admin: bool = True
    # How long an admin session lasts, in seconds.
    session_seconds: int = _opt(8 * 3600, lo=60, hi=86400 * 30)
    # A bearer token /metrics requires; empty: open to whoever reaches the port.
    metrics_token: str = ""


@dataclass(frozen=True)
class AcmeSettings:
    """Certificates from an ACME CA (RFC 8555), instead of tls.cert/tls.key."""

    enabled: bool = False
    directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    email: str = ""
    # Names on the certificate; empty: hostname plus mta-sts. and autoconfig. of every configured domain.
    names: tuple[str, ...] = ()
    challenge: str = _opt("http-01", choices=("http-01", "tls-alpn-01"))
    # Renew when fewer than this many days are left.
    renew_days: int = _opt(30, lo=1, hi=365)
    # How often to check the certificate's expiry, in seconds.
    check_interval: int = _opt(12 * 3600, lo=1, hi=86400 * 7)
    # Extra CA certificates (PEM) to trust for the directory's HTTPS: for test CAs like Pebble.
    ca_file: str = ""


@dataclass(frozen=True)
class AdminSettings:
    """Who may use the admin interface and API, besides accounts marked with 'postbote admin add'."""

    accounts: tuple[str, ...] = ()


# -- spam --
@dataclass(frozen=True)
class SpamSettings:
    """The built-in spam filter (postbote/filters/spam/): one score from many signals."""

    enabled: bool = True
    # Score at or above which a message goes into the recipients' Junk mailbox.
    junk_score: float = _opt(5.0, lo=-1000, hi=1000)
    # Score at or above which it is refused at SMTP time (550 5.7.1); 0: never refuse.
    reject_score: float = _opt(12.0, lo=0, hi=1000)
    # Add X-Spam-Status and X-Spam-Score to every checked message.
    add_headers: bool = True
    # Points the classifier adds at a spam probability of 0.8 or more (takes away at 0.2 or less).
    bayes_weight: float = _opt(6.0, lo=0, hi=100)
    # Trained spam and ham messages each, before the classifier has a say.
    min_trained: int = _opt(10, lo=1, hi=1_000_000)
    # DNS block/allow lists of IP addresses, "zone" or "zone=points" (e.g. "zen.spamhaus.org=4").
    dnsbl_zones: tuple[str, ...] = ()
    dnswl_zones: tuple[str, ...] = ()
    dnsbl_score: float = _opt(4.0, lo=-100, hi=100)
    dnswl_score: float = _opt(-4.0, lo=-100, hi=100)
    # Points for a sender whose earlier mail to this recipient was all spam (negated if all ham).
    reputation_weight: float = _opt(3.0, lo=0, hi=100)
    # Also score our own users' outgoing mail (headers only, never refused).
    check_outgoing: bool = False


@dataclass(frozen=True)
class GreylistSettings:
    """Greylisting (postbote/filters/greylist.py): a first delivery attempt is deferred."""

    enabled: bool = False
    delay: int = _opt(300, lo=0, hi=86400)  # seconds before a retry is accepted
    retry_window: int = _opt(2 * 86400, lo=60, hi=86400 * 30)  # a retry after this starts over
    expire: int = _opt(35 * 86400, lo=3600, hi=86400 * 365)  # forget triplets unseen this long
    ipv4_prefix: int = _opt(24, lo=8, hi=32)
    ipv6_prefix: int = _opt(64, lo=16, hi=128)
    # Domains (and subdomains) whose DKIM-verified mail is never greylisted.
    pass_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class RspamdSettings:
    """An outside rspamd asked about every inbound message (postbote/filters/rspamd.py)."""

    enabled: bool = False
    url: str = "http://127.0.0.1:11333"
    password: str = ""
    timeout: float = _opt(20.0, lo=0.1, hi=600)
    # What to do when rspamd cannot be reached: "accept" (default) or "tempfail".
    on_error: str = _opt("accept", choices=("accept", "tempfail"))


@dataclass(frozen=True)
class ClamavSettings:
    """Virus scanning by clamd over INSTREAM (postbote/filters/clamav.py)."""

    enabled: bool = False
    # "unix:/run/clamav/clamd.ctl" or "tcp:127.0.0.1:3310".
    address: str = "unix:/run/clamav/clamd.ctl"
    timeout: float = _opt(60.0, lo=0.1, hi=3600)
    # When clamd cannot be reached: "tempfail" (451 4.7.0, default) or "accept".
    on_error: str = _opt("tempfail", choices=("tempfail", "accept"))
    max_size: int = _opt(25 * 1024 * 1024, lo=1024, hi=2**31)  # clamd's StreamMaxLength


@dataclass(frozen=True)
class Settings:
    hostname: str = "localhost"
    # Domains to receive mail for, added at start if missing (more can be
    # added with 'postbote domain add').
    domains: tuple[str, ...] = ("localhost",)
    data_dir: str = "var"
    # Executor threads for blocking work (SQLite, fsync, argon2, parsing).
    worker_threads: int = _opt(8, lo=1, hi=256)
    dns: DnsSettings = field(default_factory=DnsSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    listen: ServiceSettings = field(default_factory=ServiceSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    log: LogSettings = field(default_factory=LogSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    mailauth: MailAuthSettings = field(default_factory=MailAuthSettings)
    spam: SpamSettings = field(default_factory=SpamSettings)
    greylist: GreylistSettings = field(default_factory=GreylistSettings)
    rspamd: RspamdSettings = field(default_factory=RspamdSettings)
    clamav: ClamavSettings = field(default_factory=ClamavSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    acme: AcmeSettings = field(default_factory=AcmeSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def load_settings(path: str | Path | None, *, data_dir: str | None = None) -> Settings:
    """Read and validate a config file; no path means the development defaults."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None
    settings = _build(Settings, raw, "")
    _check_names(settings)
    _check_outbound(settings.outbound)
    if path is None:  # the development instance sends nothing off the machine
        settings = dataclasses.replace(settings, outbound=dataclasses.replace(settings.outbound, enabled=False))
    _check_mailauth(settings.mailauth)
    _check_spam(settings)
    _check_operations(settings)
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)
    return settings


def _check_names(settings: Settings) -> None:
    from postbote.mail.address import AddressError, normalize_domain

    for key, names in (("hostname", [settings.hostname]), ("domains", settings.domains)):
        for name in names:
            try:
                normalize_domain(name)
            except AddressError:
                raise ConfigError(f"config: {key} must be domain names like \"mail.example.com\", got {name!r}") from None


# -- outbound queue --
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int | None:
    """"90s", "5m", "2h", "1d" or a number of seconds; None if it is none of those."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    if len(text) > 1 and text[:-1].isdigit() and text[-1] in _DURATION_UNITS:
        return int(text[:-1]) * _DURATION_UNITS[text[-1]]
    return None


def _check_outbound(out: OutboundSettings) -> None:
    if not out.retry_schedule:
        raise ConfigError("config: outbound.retry_schedule must list at least one wait, e.g. [\"5m\", \"1h\"]")
    for item in out.retry_schedule:
        seconds = parse_duration(item)
        if seconds is None or seconds < 1:
            raise ConfigError(f"config: outbound.retry_schedule must be waits like \"30s\", \"5m\", \"2h\", \"1d\", got {item!r}")


# -- mail authentication --
def _check_mailauth(auth: MailAuthSettings) -> None:
    from postbote.mail.address import AddressError, normalize_domain

    for key in ("report_only_domains", "never_refuse", "always_reject", "trusted_forwarders"):
        for name in getattr(auth, key):
            if key == "trusted_forwarders":
                try:
                    ipaddress.ip_network(name, strict=False)
                    continue
                except ValueError:
                    pass
            try:
                normalize_domain(name)
            except AddressError:
                what = "domain names or IP networks" if key == "trusted_forwarders" else "domain names"
                raise ConfigError(f"config: mailauth.{key} must be {what}, got {name!r}") from None


# -- operations --
def _check_operations(settings: Settings) -> None:
    from postbote.mail.address import AddressError, normalize_domain, parse_address

    acme = settings.acme
    if not acme.directory.startswith(("https://", "http://")):
        raise ConfigError(f"config: acme.directory must be an https:// URL, got {acme.directory!r}")
    if acme.enabled and (settings.tls.cert or settings.tls.key):
        raise ConfigError("config: acme.enabled and tls.cert/tls.key exclude each other; set one of them")
    for name in acme.names:
        try:
            normalize_domain(name)
        except AddressError:
            raise ConfigError(f"config: acme.names must be domain names, got {name!r}") from None
    for address in settings.admin.accounts:
        try:
            parse_address(address)
        except AddressError:
            raise ConfigError(f"config: admin.accounts must be account addresses, got {address!r}") from None


# -- spam --
def _check_spam(settings: Settings) -> None:
    for key in ("dnsbl_zones", "dnswl_zones"):
        for item in getattr(settings.spam, key):
            zone, eq, points = item.partition("=")
            try:
                float(points) if eq else None
            except ValueError:
                raise ConfigError(f"config: spam.{key} must be \"zone\" or \"zone=points\", got {item!r}") from None
            if not zone.strip() or " " in zone.strip():
                raise ConfigError(f"config: spam.{key} must be DNS zone names, got {item!r}")
    address = settings.clamav.address
    if not (address.startswith("unix:/") or (address.startswith("tcp:") and address.rpartition(":")[2].isdigit())):
        raise ConfigError(f"config: clamav.address must be \"unix:/path\" or \"tcp:host:port\", got {address!r}")
    if not settings.rspamd.url.startswith(("http://", "https://")):
        raise ConfigError(f"config: rspamd.url must be an http:// or https:// URL, got {settings.rspamd.url!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config: [{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"config: unknown key {prefix}{key}")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _convert(hints[name], f, raw[name], prefix + name)
        elif dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], {}, prefix + name + ".")
    return cls(**values)


def _convert(hint: Any, f: dataclasses.Field, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if f.metadata.get("listen"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"config: {key} must be a list of \"IP:port\" strings")
        return tuple(parse_listen(v, key) for v in items)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config: {key} must be a list of strings, got {value!r}")
        return tuple(value)
    return _scalar(hint, f.metadata, value, key)


def _scalar(hint: Any, meta: Any, value: Any, key: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config: {key} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        ok = isinstance(value, int) if hint is int else isinstance(value, (int, float))
        lo, hi = meta.get("lo"), meta.get("hi")
        if not ok or isinstance(value, bool) or (lo is not None and value < lo) or (hi is not None and value > hi):
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"config: {key} must be {kind} from {lo} to {hi}, got {value!r}")
        return hint(value)
    if hint is str:
        choices = meta.get("choices") or ()
        if not isinstance(value, str) or (choices and value not in choices):
            want = " or ".join(f'"{c}"' for c in choices) if choices else "a string"
            raise ConfigError(f"config: {key} must be {want}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in this module


__all__ = ["ConfigError", "ListenAddress", "Settings", "load_settings", "parse_listen"]
