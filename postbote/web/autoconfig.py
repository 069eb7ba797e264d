"""Client autoconfiguration and the MTA-STS policy.

- Thunderbird: ``/.well-known/autoconfig/mail/config-v1.1.xml`` (and ``/mail/config-v1.1.xml`` on
  the ``autoconfig.DOMAIN`` host), the clientConfig 1.1 format.
- Outlook: autodiscover "POX" (``POST /autodiscover/autodiscover.xml``), the 2006a response schema.
- Apple: a ``.mobileconfig`` profile with a com.apple.mail.managed payload.
- MTA-STS (RFC 8461 §3.2): ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``.

Every answer names the server's hostname and the ports it listens on, implicit
TLS first (RFC 8314 §5.1 prefers it to STARTTLS).
"""

from __future__ import annotations

import asyncio
import plistlib
import uuid
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from postbote.mail.address import AddressError, normalize_domain, parse_address
from postbote.queue.records import mta_sts_policy

if TYPE_CHECKING:
    from postbote.app import App
    from postbote.web.asgi import WebState

MAX_REQUEST = 16 * 1024
OUTLOOK_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
AUTODISCOVER_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"


def service_port(app: "App", service: str) -> int | None:
    """The port clients should use for a service; None when it is off."""
    addrs = getattr(app.settings.listen, service)
    if not addrs:
        return None
    if addrs[0].port:
        return addrs[0].port
    try:
        return app.listener(service).ports[0]  # port 0 (tests): the one the OS chose
    except (StopIteration, IndexError):
        return None


def servers(app: "App") -> dict[str, list[tuple[int, str]]]:
    """Per kind (imap, pop3, smtp): (port, socketType) in order of preference."""
    out: dict[str, list[tuple[int, str]]] = {}
    for kind, implicit, starttls in (("imap", "imaps", "imap"), ("pop3", "pop3s", "pop3"),
                                     ("smtp", "submissions", "submission")):
        found = []
        if (p := service_port(app, implicit)) is not None:
            found.append((p, "SSL"))
        if (p := service_port(app, starttls)) is not None:
            found.append((p, "STARTTLS"))
        out[kind] = found
    return out


async def our_domain(app: "App", name: str) -> str | None:
    try:
        domain = normalize_domain(name)
    except AddressError:
        return None
    return domain if await app.store.get_domain(domain) is not None else None


def thunderbird_xml(app: "App", domain: str) -> str:
    host = escape(app.settings.hostname)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<clientConfig version="1.1">',
             f'  <emailProvider id="{escape(domain)}">', f"    <domain>{escape(domain)}</domain>",
             f"    <displayName>{escape(domain)} mail</displayName>",
             f"    <displayShortName>{escape(domain)}</displayShortName>"]
    found = servers(app)
    for kind in ("imap", "pop3"):
        for port, socket_type in found[kind]:
            lines += [f'    <incomingServer type="{kind}">', f"      <hostname>{host}</hostname>",
                      f"      <port>{port}</port>", f"      <socketType>{socket_type}</socketType>",
                      "      <username>%EMAILADDRESS%</username>",
                      "      <authentication>password-cleartext</authentication>", "    </incomingServer>"]
    for port, socket_type in found["smtp"]:
        lines += ['    <outgoingServer type="smtp">', f"      <hostname>{host}</hostname>",
                  f"      <port>{port}</port>", f"      <socketType>{socket_type}</socketType>",
                  "      <username>%EMAILADDRESS%</username>",
                  "      <authentication>password-cleartext</authentication>", "    </outgoingServer>"]
    lines += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(lines)


def outlook_xml(app: "App", email: str) -> str:
    host = escape(app.settings.hostname)
    found = servers(app)
    protocols = []
    for kind, type_ in (("imap", "IMAP"), ("smtp", "SMTP"), ("pop3", "POP3")):
        # POX has one protocol per type: take the preferred (implicit TLS) one.
        if not found[kind]:
            continue
        port, socket_type = found[kind][0]
        extra = "<Encryption>TLS</Encryption>" if socket_type == "STARTTLS" else ""
        protocols.append(
            f"<Protocol><Type>{type_}</Type><Server>{host}</Server><Port>{port}</Port>"
            f"<LoginName>{escape(email)}</LoginName><DomainRequired>off</DomainRequired><SPA>off</SPA>"
            f"<SSL>on</SSL>{extra}<AuthRequired>on</AuthRequired></Protocol>")
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<Autodiscover xmlns="{AUTODISCOVER_RESPONSE}">'
            f'<Response xmlns="{OUTLOOK_RESPONSE}"><Account><AccountType>email</AccountType>'
            f"<Action>settings</Action>{''.join(protocols)}</Account></Response></Autodiscover>\n")


def outlook_error(code: str, message: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<Autodiscover xmlns="{AUTODISCOVER_RESPONSE}">'
            f"<Response><Error><ErrorCode>{code}</ErrorCode><Message>{escape(message)}</Message>"
            "</Error></Response></Autodiscover>\n")


def request_email(body: bytes) -> str | None:
    """The EMailAddress of an autodiscover request; None if the XML is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rpartition("}")[2] == "EMailAddress" and el.text:
            return el.text.strip()
    return None


def mobileconfig(app: "App", email: str) -> bytes:
    found = servers(app)
    host = app.settings.hostname
    imap = found["imap"][0] if found["imap"] else (993, "SSL")
    smtp = found["smtp"][0] if found["smtp"] else (465, "SSL")
    domain = email.rpartition("@")[2]
    ident = ".".join(reversed(domain.split("."))) + ".postbote.mail"
    payload = {
        "PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
        "PayloadIdentifier": ident + ".account", "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, email + "/mail")),
        "PayloadDisplayName": email, "EmailAccountType": "EmailTypeIMAP", "EmailAddress": email,
        "EmailAccountDescription": email,
        "IncomingMailServerHostName": host, "IncomingMailServerPortNumber": imap[0],
        "IncomingMailServerUseSSL": imap[1] == "SSL", "IncomingMailServerUsername": email,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": host, "OutgoingMailServerPortNumber": smtp[0],
        "OutgoingMailServerUseSSL": smtp[1] == "SSL", "OutgoingMailServerUsername": email,
        "OutgoingMailServerAuthentication": "EmailAuthPassword", "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration", "PayloadVersion": 1, "PayloadIdentifier": ident,
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, email + "/profile")),
        "PayloadDisplayName": f"Mail for {email}", "PayloadContent": [payload],
    }
    return plistlib.dumps(profile)


def _host(request: Request) -> str:
    from postbote.web.asgi import host_name

    return host_name(request.headers.get("host", ""))


def routes(state: "WebState") -> list[Route]:
    app = state.app

    async def thunderbird(request: Request) -> Response:
        email = request.query_params.get("emailaddress", "")
        name = email.rpartition("@")[2] if "@" in email else ""
        host = _host(request).lower()
        if not name and host.startswith("autoconfig."):
            name = host[len("autoconfig."):]
        domain = await our_domain(app, name) if name else None
        if domain is None:
            return PlainTextResponse("no such mail domain here\n", 404)
        return Response(thunderbird_xml(app, domain), media_type="application/xml")

    async def autodiscover(request: Request) -> Response:
        body = await request.body()
        email = request_email(body[:MAX_REQUEST + 1]) if len(body) <= MAX_REQUEST else None
        if email is None:
            return Response(outlook_error("600", "Invalid Request"), 400, media_type="application/xml")
        try:
            address = parse_address(email)
        except AddressError:
            return Response(outlook_error("600", "Invalid Request"), 400, media_type="application/xml")
        if await our_domain(app, address.domain) is None:
            return Response(outlook_error("603", "The requested account is not configured here"),
                            media_type="application/xml")
        return Response(outlook_xml(app, str(address)), media_type="application/xml")

    async def apple(request: Request) -> Response:
        try:
            address = parse_address(request.query_params.get("email", ""))
        except AddressError:
            return PlainTextResponse("give ?email=ADDRESS of an account here\n", 400)
        if await our_domain(app, address.domain) is None:
            return PlainTextResponse("no such mail domain here\n", 404)
        return Response(mobileconfig(app, str(address)), media_type="application/x-apple-aspen-config",
                        headers={"Content-Disposition": 'attachment; filename="mail.mobileconfig"'})

    async def mta_sts(request: Request) -> Response:
        host = _host(request).lower()
        if not host.startswith("mta-sts.") or await our_domain(app, host[len("mta-sts."):]) is None:
            return PlainTextResponse("MTA-STS policies are served on mta-sts.DOMAIN\n", 404)
        return PlainTextResponse(mta_sts_policy(app.settings.hostname))

    async def acme_challenge(request: Request) -> Response:
        from postbote.acme import read_http_challenge

        token = request.path_params["token"]
        answer = state.acme_challenges.get(token)
        if answer is None:  # an order by another worker process (serve --workers)
            answer = await asyncio.get_running_loop().run_in_executor(
                app.executor, read_http_challenge, app.settings.data_path, token)
        if answer is None:
            return PlainTextResponse("no such challenge\n", 404)
        return PlainTextResponse(answer, media_type="application/octet-stream")

    return [
        Route("/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird),
        Route("/mail/config-v1.1.xml", thunderbird),
        Route("/autodiscover/autodiscover.xml", autodiscover, methods=["POST"]),
        Route("/Autodiscover/Autodiscover.xml", autodiscover, methods=["POST"]),
        Route("/apple/mail.mobileconfig", apple),
        Route("/.well-known/mta-sts.txt", mta_sts),
        Route("/.well-known/acme-challenge/{token}", acme_challenge),
    ]
