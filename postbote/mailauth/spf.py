"""SPF (RFC 7208): may this IP address send mail for this domain?

``check_host`` is the function of RFC 7208 §4: every mechanism, modifier and
macro, the limits of 10 DNS-querying terms and 2 void lookups (§4.6.4), and
one of the seven results for every input, never an exception. All DNS goes
through an object with postbote's ``Resolver.query`` signature, so tests
point it at a DNS server on loopback. Syntax is checked for the whole record
before anything is evaluated (§4.6: a syntax error anywhere is a permerror).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from postbote.dns import Answer, DnsError, NoRecords, NxDomain, TempFailure

from .lookup import Lookup, ascii_domain

MAX_DNS_TERMS = 10  # RFC 7208 §4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 §4.6.4
MAX_MX_NAMES = 10  # RFC 7208 §4.6.4
MAX_PTR_NAMES = 10  # RFC 7208 §4.6.4
CHECK_TIMEOUT = 20.0  # RFC 7208 §4.6.4: at least 20 seconds for the whole check
DEFAULT_EXPLANATION = "See https://www.open-spf.org/Why?s=%{S}&i=%{I}&h=%{H}"


class SpfResult(enum.Enum):
    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True)
class SpfOutcome:
    result: SpfResult
    identity: str  # "mailfrom" or "helo"
    domain: str  # the domain whose policy was checked ("" when there was none)
    sender: str  # the <sender> of check_host: local@domain
    explanation: str = ""  # for FAIL: the domain's exp= text, or the default
    reason: str = ""  # which mechanism matched, or what went wrong


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


_QUALIFIERS = {"+": SpfResult.PASS, "-": SpfResult.FAIL, "~": SpfResult.SOFTFAIL, "?": SpfResult.NEUTRAL}
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.S)
_MECH = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9_.\-]*)(.*)", re.S)
_TOPLABEL = re.compile(r"(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\.?", re.S)
_IP4_CIDR = r"/(?:0|[1-9][0-9]?)"
_IP6_CIDR = r"/(?:0|[1-9][0-9]{0,2})"
_DUAL_CIDR = re.compile(rf"(.*?)({_IP4_CIDR})?(/{_IP6_CIDR})?", re.S)
_MACRO_LETTERS = "slodiphv"
_EXP_ONLY_LETTERS = "crt"


@dataclass(frozen=True)
class _Directive:
    qualifier: SpfResult
    name: str  # one of _MECHANISMS
    domain: str | None = None  # domain-spec, macros not yet expanded
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128
    text: str = ""


@dataclass(frozen=True)
class _Record:
    directives: tuple[_Directive, ...]
    redirect: str | None = None
    exp: str | None = None


@dataclass
class _Session:
    """What one SPF check shares across include and redirect (§4.6.4 limits)."""

    dns: Lookup
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    receiver: str
    now: int
    terms: int = 0
    voids: int = 0
    cache: dict[tuple[str, str], list] = field(default_factory=dict)
    p_name: str = "unknown"  # %{p}, looked up only when a macro asks for it


async def check_host(dns: Lookup, ip: str, domain: str, sender: str, helo: str, *,
                     receiver: str = "unknown", identity: str = "mailfrom",
                     default_explanation: str = DEFAULT_EXPLANATION,
                     now: int | None = None) -> SpfOutcome:
    """RFC 7208 §4: the result for ``ip`` sending as ``sender`` on behalf of ``domain``."""
    try:
        address = _client_address(ip)
    except ValueError:
        return SpfOutcome(SpfResult.PERMERROR, identity, domain, sender, reason=f"bad client address {ip!r}")
    session = _Session(dns, address, sender, helo, receiver, int(time.time() if now is None else now))
    domain = ascii_domain(domain) or ""
    if not _valid_domain(domain):
        return SpfOutcome(SpfResult.NONE, identity, domain, sender, reason="not a valid domain name")
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            result, reason, exp = await _evaluate(session, domain)
    except TimeoutError:
        return SpfOutcome(SpfResult.TEMPERROR, identity, domain, sender, reason="the check took too long")
    except _TempError as exc:
        return SpfOutcome(SpfResult.TEMPERROR, identity, domain, sender, reason=str(exc))
    except _PermError as exc:
        return SpfOutcome(SpfResult.PERMERROR, identity, domain, sender, reason=str(exc))
    explanation = ""
    if result is SpfResult.FAIL:
        explanation = exp if exp is not None else await _safe_expand(session, default_explanation, domain)
    return SpfOutcome(result, identity, domain, sender, explanation, reason)


async def check_mailfrom(dns: Lookup, ip: str, mail_from: str, helo: str, **kw: object) -> SpfOutcome:
    """The MAIL FROM identity (§2.4); the null reverse-path checks postmaster@HELO."""
    if not mail_from:
        return await check_helo(dns, ip, helo, identity="mailfrom", **kw)  # type: ignore[arg-type]
    local, at, domain = mail_from.rpartition("@")
    if not at:
        local, domain = "postmaster", mail_from
    local = local or "postmaster"  # RFC 7208 §4.3
    return await check_host(dns, ip, domain, f"{local}@{domain}", helo, **kw)  # type: ignore[arg-type]


async def check_helo(dns: Lookup, ip: str, helo: str, *, identity: str = "helo", **kw: object) -> SpfOutcome:
    """The HELO identity (§2.3): sender postmaster@HELO."""
    return await check_host(dns, ip, helo, f"postmaster@{helo}", helo, identity=identity, **kw)  # type: ignore[arg-type]


def _client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(ip.strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # RFC 7208 §5: an IPv4-mapped address is the IPv4 client
    return address


def _valid_domain(domain: str) -> bool:
    """RFC 7208 §4.3: a name that is not a multi-label FQDN gives "none"."""
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253:
        return False
    return all(0 < len(label) <= 63 for label in labels) and not domain.startswith("[")


# -- evaluation ------------------------------------------------------------------------
async def _evaluate(s: _Session, domain: str) -> tuple[SpfResult, str, str | None]:
    """check_host() of §4 for one domain: (result, reason, explanation or None)."""
    record = await _fetch_record(s, domain)
    if record is None:
        return SpfResult.NONE, f"{domain} has no SPF record", None
    parsed = parse_record(record)
    for d in parsed.directives:
        if await _matches(s, d, domain):
            result = d.qualifier
            exp = await _explanation(s, parsed.exp, domain) if result is SpfResult.FAIL else None
            return result, f"matched {d.text}", exp
    if parsed.redirect is not None:
        _count_term(s)
        target = await _expand_domain(s, parsed.redirect, domain)
        if not _valid_domain(target):
            raise _PermError(f"redirect to invalid domain {target!r}")
        result, reason, exp = await _evaluate(s, target)
        if result is SpfResult.NONE:
            raise _PermError(f"redirect target {target} has no SPF record")  # §6.1
        return result, reason, exp
    return SpfResult.NEUTRAL, "no mechanism matched", None  # §4.7


async def _fetch_record(s: _Session, domain: str) -> str | None:
    """§4.5: exactly one TXT record starting "v=spf1"."""
    try:
        texts = (await s.dns.query(domain, "TXT")).texts()
    except (NxDomain, NoRecords):
        return None
    except TempFailure as exc:
        raise _TempError(str(exc)) from None
    except DnsError as exc:
        raise _TempError(str(exc)) from None
    records = [t for t in texts if t[:6].lower() == "v=spf1" and (len(t) == 6 or t[6] == " ")]
    if len(records) > 1:
        raise _PermError(f"{domain} has {len(records)} SPF records")
    if not records:
        return None
    if not records[0].isascii():
        raise _PermError(f"{domain}: SPF record is not ASCII")  # §3.1
    return records[0]


async def _matches(s: _Session, d: _Directive, domain: str) -> bool:
    if d.name == "all":
        return True
    if d.name in ("ip4", "ip6"):
        assert d.network is not None
        return s.ip.version == d.network.version and s.ip in d.network
    _count_term(s)
    target = await _expand_domain(s, d.domain, domain) if d.domain is not None else domain
    if d.name == "include":
        return await _include(s, target)
    if d.name == "exists":
        return bool(await _addresses(s, target, "A", void=True))
    if d.name == "a":
        return _in_cidr(s, await _addresses(s, target, _rdtype(s), void=True), d)
    if d.name == "mx":
        return await _mx(s, target, d)
    return await _ptr_matches(s, target)


def _count_term(s: _Session) -> None:
    s.terms += 1
    if s.terms > MAX_DNS_TERMS:
        raise _PermError(f"more than {MAX_DNS_TERMS} DNS-querying terms")


async def _include(s: _Session, target: str) -> bool:
    """§5.2: pass matches; fail/softfail/neutral do not; none and errors are permerror/temperror."""
    if not _valid_domain(target):
        raise _PermError(f"include of invalid domain {target!r}")
    result, _, _ = await _evaluate(s, target)
    if result is SpfResult.NONE:
        raise _PermError(f"included domain {target} has no SPF record")
    return result is SpfResult.PASS


async def _mx(s: _Session, target: str, d: _Directive) -> bool:
    names = [r.exchange.to_text(omit_final_dot=True) for r in await _records(s, target, "MX", void=True)]
    if len(names) > MAX_MX_NAMES:
        raise _PermError(f"{target} has more than {MAX_MX_NAMES} MX records")
    for name in names:
        if _in_cidr(s, await _addresses(s, name, _rdtype(s)), d):
            return True
    return False


async def _ptr_matches(s: _Session, target: str) -> bool:
    target = target.lower().rstrip(".")
    for name in await _validated_names(s):
        if name == target or name.endswith("." + target):
            return True
    return False


async def _validated_names(s: _Session) -> list[str]:
    """§5.5: PTR names of the client whose A/AAAA records lead back to it."""
    reverse = _reverse_name(s.ip)
    try:
        ptrs = await _records(s, reverse, "PTR", void=True)
    except _TempError:
        return []  # §5.5: a DNS error on the PTR lookup: no match
    validated = []
    for r in ptrs[:MAX_PTR_NAMES]:
        name = r.target.to_text(omit_final_dot=True).lower()
        try:
            if s.ip in await _addresses(s, name, _rdtype(s)):
                validated.append(name)
        except _TempError:
            continue
    return validated


def _rdtype(s: _Session) -> str:
    return "A" if s.ip.version == 4 else "AAAA"


def _in_cidr(s: _Session, addresses: list, d: _Directive) -> bool:
    prefix = d.cidr4 if s.ip.version == 4 else d.cidr6
    network = ipaddress.ip_network(f"{s.ip}/{prefix}", strict=False)
    return any(a.version == s.ip.version and a in network for a in addresses)


async def _addresses(s: _Session, name: str, rdtype: str, void: bool = False) -> list:
    return [ipaddress.ip_address(r.address) for r in await _records(s, name, rdtype, void)]


async def _records(s: _Session, name: str, rdtype: str, void: bool = False) -> list:
    """Records of one lookup; empty answers count as void lookups (§4.6.4)."""
    key = (name.lower(), rdtype)
    if key not in s.cache:
        if not _queryable(name):
            s.cache[key] = []
        else:
            try:
                s.cache[key] = list((await s.dns.query(name, rdtype)).rrset)
            except (NxDomain, NoRecords):
                s.cache[key] = []
            except DnsError as exc:
                raise _TempError(str(exc)) from None
    records = s.cache[key]
    if not records and void:
        s.voids += 1
        if s.voids > MAX_VOID_LOOKUPS:
            raise _PermError(f"more than {MAX_VOID_LOOKUPS} void DNS lookups")
    return records


def _queryable(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and all(0 < len(label) <= 63 for label in labels)


def _reverse_name(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return ip.reverse_pointer


async def _explanation(s: _Session, exp: str | None, domain: str) -> str | None:
    """§6.2: the exp= TXT record, macro-expanded; any problem means no explanation."""
    if exp is None:
        return None
    try:
        target = await _expand_domain(s, exp, domain)
        texts = (await s.dns.query(target, "TXT")).texts()
    except (_PermError, _TempError, DnsError):
        return None
    if len(texts) != 1 or not texts[0].isascii():
        return None
    if "%{p" in texts[0].lower():
        s.p_name = await _p_macro(s)
    try:
        return expand(texts[0], s, domain, explanation=True)
    except _PermError:
        return None


async def _safe_expand(s: _Session, text: str, domain: str) -> str:
    try:
        return expand(text, s, domain, explanation=True)
    except _PermError:
        return text


async def _expand_domain(s: _Session, spec: str, domain: str) -> str:
    """Expand a domain-spec; §7.3: drop left labels until it fits 253 octets."""
    if "%{p" in spec.lower():
        s.p_name = await _p_macro(s)
    expanded = expand(spec, s, domain).rstrip(".")
    while len(expanded) > 253 and "." in expanded:
        expanded = expanded.split(".", 1)[1]
    return expanded


async def _p_macro(s: _Session) -> str:
    """§7.3: the validated domain name of the client, or "unknown"."""
    try:
        names = await _validated_names(s)
    except _PermError:
        names = []
    return names[0] if names else "unknown"


# -- macros (§7) -----------------------------------------------------------------------
def expand(text: str, s: _Session, domain: str, explanation: bool = False) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "%":
            out.append("%")
        elif nxt == "_":
            out.append(" ")
        elif nxt == "-":
            out.append("%20")
        elif nxt == "{":
            end = text.find("}", i)
            if end < 0:
                raise _PermError(f"unterminated macro in {text!r}")
            out.append(_macro(text[i + 2:end], s, domain, explanation))
            i = end + 1
            continue
        else:
            raise _PermError(f"bad macro {text[i:i + 2]!r}")
        i += 2
    return "".join(out)


_MACRO_BODY = re.compile(r"([a-zA-Z])([0-9]*)(r?)([.\-+,/_=]*)", re.I)


def _macro(body: str, s: _Session, domain: str, explanation: bool) -> str:
    m = _MACRO_BODY.fullmatch(body)
    if not m:
        raise _PermError(f"bad macro %{{{body}}}")
    letter, digits, reverse, delimiters = m.groups()
    lower = letter.lower()
    if lower not in _MACRO_LETTERS and not (explanation and lower in _EXP_ONLY_LETTERS):
        raise _PermError(f"macro letter {letter!r} not allowed here")
    value = _macro_value(lower, s, domain)
    parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
    if reverse:
        parts.reverse()
    if digits:
        keep = int(digits)
        if keep == 0:
            raise _PermError("macro transformer of 0 parts")
        parts = parts[-keep:]
    value = ".".join(parts)
    if letter.isupper():
        value = urllib.parse.quote(value, safe="-._~")  # §7.3: URL-escape uppercase macros
    return value


def _macro_value(letter: str, s: _Session, domain: str) -> str:
    local, _, sender_domain = s.sender.rpartition("@")
    ip = s.ip
    if letter == "s":
        return s.sender
    if letter == "l":
        return local or "postmaster"
    if letter == "o":
        return sender_domain
    if letter == "d":
        return domain
    if letter == "i":
        if ip.version == 4:
            return str(ip)
        return ".".join(ip.exploded.replace(":", ""))
    if letter == "p":
        return s.p_name
    if letter == "v":
        return "in-addr" if ip.version == 4 else "ip6"
    if letter == "h":
        return s.helo
    if letter == "c":
        return str(ip)
    if letter == "r":
        return s.receiver or "unknown"
    return str(s.now)  # "t"


# -- parsing (§4.6, §5, §6) ------------------------------------------------------------
def parse_record(record: str) -> _Record:
    """The directives and modifiers of a record; a syntax error anywhere is a permerror."""
    directives: list[_Directive] = []
    modifiers: dict[str, str] = {}
    for term in record.split(" ")[1:]:
        if not term:
            continue
        mod = _MODIFIER.fullmatch(term)
        if mod:
            name, value = mod.group(1).lower(), mod.group(2)
            if name in modifiers and name in ("redirect", "exp"):
                raise _PermError(f"{name}= appears twice")  # §6
            _check_macro_string(value, explanation=name not in ("redirect", "exp"))
            if name in ("redirect", "exp"):
                _check_domain_spec(value)
            modifiers[name] = value
            continue
        directives.append(_parse_directive(term))
    has_all = any(d.name == "all" for d in directives)
    return _Record(tuple(directives), None if has_all else modifiers.get("redirect"), modifiers.get("exp"))


def _parse_directive(term: str) -> _Directive:
    m = _MECH.fullmatch(term)
    if not m:
        raise _PermError(f"bad term {term!r}")
    qualifier = _QUALIFIERS[m.group(1) or "+"]
    name, rest = m.group(2).lower(), m.group(3)
    if name not in _MECHANISMS:
        raise _PermError(f"unknown mechanism {term!r}")
    if name == "all":
        if rest:
            raise _PermError(f"bad term {term!r}")
        return _Directive(qualifier, name, text=term)
    if name in ("ip4", "ip6"):
        return _parse_ip(qualifier, name, rest, term)
    if name in ("a", "mx"):
        return _parse_a(qualifier, name, rest, term)
    if not rest.startswith(":") and name in ("include", "exists"):
        raise _PermError(f"{name} needs a domain: {term!r}")
    if rest and not rest.startswith(":"):
        raise _PermError(f"bad term {term!r}")
    spec = rest[1:] if rest else None
    if spec is not None:
        _check_domain_spec(spec)
    return _Directive(qualifier, name, spec, text=term)


def _parse_a(qualifier: SpfResult, name: str, rest: str, term: str) -> _Directive:
    m = _DUAL_CIDR.fullmatch(rest)
    assert m is not None
    spec_part, c4, c6 = m.groups()
    cidr4 = int(c4[1:]) if c4 else 32
    cidr6 = int(c6[2:]) if c6 else 128
    if cidr4 > 32 or cidr6 > 128:
        raise _PermError(f"bad CIDR length in {term!r}")
    spec = None
    if spec_part:
        if not spec_part.startswith(":"):
            raise _PermError(f"bad term {term!r}")
        spec = spec_part[1:]
        _check_domain_spec(spec)
    return _Directive(qualifier, name, spec, cidr4=cidr4, cidr6=cidr6, text=term)


def _parse_ip(qualifier: SpfResult, name: str, rest: str, term: str) -> _Directive:
    if not rest.startswith(":"):
        raise _PermError(f"{name} needs an address: {term!r}")
    address, slash, length = rest[1:].partition("/")
    cidr = _IP4_CIDR if name == "ip4" else _IP6_CIDR
    if slash and not re.fullmatch(cidr, "/" + length):
        raise _PermError(f"bad CIDR length in {term!r}")
    try:
        ip = ipaddress.IPv4Address(address) if name == "ip4" else ipaddress.IPv6Address(address)
        network = ipaddress.ip_network(f"{ip}/{length}" if slash else str(ip), strict=False)
    except ValueError:
        raise _PermError(f"bad address in {term!r}") from None
    return _Directive(qualifier, name, network=network, text=term)


def _check_macro_string(value: str, explanation: bool = False) -> None:
    """Only the syntax: a throwaway session expands it (§7.1 grammar; c, r, t only in exp text)."""
    probe = _Session(_NoDns(), ipaddress.IPv4Address("192.0.2.1"), "a@b.c", "b.c", "", 0)
    expand(value, probe, "b.c", explanation=explanation)
    if not value.isascii() or any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise _PermError(f"bad characters in {value!r}")


def _check_domain_spec(spec: str) -> None:
    """§7.1: domain-spec = macro-string domain-end; domain-end = "." toplabel ["."] / macro-expand."""
    _check_macro_string(spec)
    if not spec:
        raise _PermError("empty domain-spec")
    if re.search(r"%\{[^}]*\}$", spec):
        return
    label = spec.rstrip(".").rpartition(".")[2] + ("." if spec.endswith(".") else "")
    if "." not in spec.rstrip(".") or not _TOPLABEL.fullmatch(label):
        raise _PermError(f"bad domain-spec {spec!r}")


class _NoDns:
    async def query(self, name: str, rdtype: str) -> Answer:
        raise TempFailure("no DNS while parsing")


# -- Received-SPF (§9.1) ---------------------------------------------------------------
def received_spf(outcome: SpfOutcome, client_ip: str, helo: str, receiver: str) -> str:
    """A complete Received-SPF header field, ending in CRLF."""
    comment = {
        SpfResult.PASS: f"domain of {outcome.sender} designates {client_ip} as permitted sender",
        SpfResult.FAIL: f"domain of {outcome.sender} does not designate {client_ip} as permitted sender",
        SpfResult.SOFTFAIL: f"domain of transitioning {outcome.sender} does not designate {client_ip} "
                            "as permitted sender",
        SpfResult.NEUTRAL: f"{client_ip} is neither permitted nor denied by domain of {outcome.sender}",
        SpfResult.NONE: f"domain of {outcome.sender} does not designate permitted sender hosts",
        SpfResult.TEMPERROR: f"error in processing during lookup of {outcome.sender}: temporary DNS failure",
        SpfResult.PERMERROR: f"error in processing during lookup of {outcome.sender}: {outcome.reason}",
    }[outcome.result]
    comment = _comment_text(comment)
    pairs = [f"client-ip={client_ip}", f"envelope-from={_quote(outcome.sender)}",
             f"helo={_quote(helo or 'unknown')}", f"receiver={receiver}", f"identity={outcome.identity}"]
    return f"Received-SPF: {outcome.result.value} ({receiver}: {comment})\r\n\t" + ";\r\n\t".join(pairs) + "\r\n"


def _quote(value: str) -> str:
    clean = "".join(c for c in value if c.isprintable() and c not in '"\\')
    return f'"{clean}"'


def _comment_text(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and c not in "()\\")
