"""Certificates from an ACME CA (RFC 8555): issued, renewed ahead of expiry, reloaded live.

The manager keeps ``DATA/acme/account.pem`` (the account key), ``key.pem`` and
``cert.pem`` (the full chain). It checks the certificate every
``acme.check_interval`` seconds and orders a new one when it is missing or has
fewer than ``acme.renew_days`` left. A new chain is loaded into the App's one
SSL context (``load_cert_chain`` on the same object), which every listener
shares, so new TLS handshakes use it at once and nothing restarts.

Challenges: http-01 (RFC 8555 §8.3) is answered by the web server's route
``/.well-known/acme-challenge/TOKEN`` on port 80; tls-alpn-01 (RFC 8737) by a
certificate the SSL context switches to for the challenged name during the
handshake. The acme library is synchronous (requests): it runs in the executor.

With ``serve --workers N`` every worker runs a manager: an exclusive lock file
lets one of them order, challenge answers are also files (the CA's request may
reach any worker), and the others load the new certificate at their next
look at the files (every ``RELOAD_INTERVAL`` seconds at most).
"""

from __future__ import annotations

import asyncio
import datetime
import fcntl
import hashlib
import logging
import os
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from postbote.log import event

if TYPE_CHECKING:
    from postbote.app import App

log = logging.getLogger("postbote.acme")

# RFC 8737 §3: the acmeIdentifier extension and the ALPN protocol name.
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
ACME_TLS_ALPN = "acme-tls/1"
ORDER_TIMEOUT = 120.0
RELOAD_INTERVAL = 300.0
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # base64url (RFC 8555 §8.1); anything else is no token of ours


def challenge_folder(data_dir: Path) -> Path:
    return data_dir / "acme" / "challenges"


def read_http_challenge(data_dir: Path, token: str) -> str | None:
    """The key authorization for an http-01 token, from any worker's order (blocking)."""
    if not _TOKEN.fullmatch(token):
        return None
    try:
        return (challenge_folder(data_dir) / f"http-{token}").read_text()
    except OSError:
        return None


class AcmeFailure(Exception):
    """An order failed; the message says at which step and why."""


@dataclass(frozen=True)
class Issued:
    names: tuple[str, ...]
    not_after: datetime.datetime
    serial: int


def certificate_names(app: "App") -> list[str]:
    if app.settings.acme.names:
        return list(dict.fromkeys(n.lower() for n in app.settings.acme.names))
    names = [app.settings.hostname]
    for domain in app.settings.domains:
        names += [f"mta-sts.{domain}", f"autoconfig.{domain}"]
    return list(dict.fromkeys(n.lower() for n in names))


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically, readable by us only."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def alpn_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """RFC 8737 §3: a self-signed certificate for ``name`` carrying SHA-256(key authorization)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            # The extension's value is the DER OCTET STRING of the digest, and it must be critical.
            .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key)


class AcmeManager:
    def __init__(self, app: "App", http_challenges: dict[str, str]) -> None:
        self.app = app
        self.settings = app.settings.acme
        self.folder = app.settings.data_path / "acme"
        self.http_challenges = http_challenges
        self.alpn_contexts: dict[str, ssl.SSLContext] = {}
        self._alpn_files: dict[str, tuple[float, ssl.SSLContext]] = {}  # other workers' challenges
        self.current: Issued | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        if self.settings.challenge == "tls-alpn-01" and app.ssl_context is not None:
            app.ssl_context.sni_callback = self._sni

    # -- the loop --------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            wait = min(float(self.settings.check_interval), RELOAD_INTERVAL)
            try:
                await self.check()
            except AcmeFailure as exc:
                event(log, "acme order failed", logging.WARNING, error=str(exc))
                wait = min(wait, 600.0)  # try again soon, not at the next regular check
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def check(self, force: bool = False) -> Issued | None:
        """Load the stored certificate; order a new one if it is missing, expiring, or ``force``."""
        loop = asyncio.get_running_loop()
        stored = await loop.run_in_executor(self.app.executor, self._stored)
        if stored is not None and (self.current is None or stored.serial != self.current.serial):
            await loop.run_in_executor(self.app.executor, self._load)
            self.current = stored
        names = certificate_names(self.app)
        due = (stored is None or set(stored.names) != set(names)
               or stored.not_after - datetime.timedelta(days=self.settings.renew_days)
               <= datetime.datetime.now(datetime.timezone.utc))
        if not (due or force):
            return None
        issued = await loop.run_in_executor(self.app.executor, self._issue, names, force)
        if issued is None or (self.current is not None and issued.serial == self.current.serial):
            return None  # another worker is ordering, or has just renewed: loaded at the next look
        await loop.run_in_executor(self.app.executor, self._load)
        self.current = issued
        event(log, "acme certificate installed", names=",".join(issued.names),
              not_after=issued.not_after.isoformat(), serial=f"{issued.serial:x}")
        return issued

    # -- files and the SSL context ---------------------------------------------------
    def _stored(self) -> Issued | None:
        try:
            pem = (self.folder / "cert.pem").read_bytes()
            if not (self.folder / "key.pem").exists():
                return None
            cert = x509.load_pem_x509_certificate(pem)
        except (OSError, ValueError):
            return None
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = ()
        return Issued(names, cert.not_valid_after_utc, cert.serial_number)

    def _load(self) -> None:
        assert self.app.ssl_context is not None
        self.app.ssl_context.load_cert_chain(self.folder / "cert.pem", self.folder / "key.pem")

    def _sni(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        name = (server_name or "").lower()
        alt = self.alpn_contexts.get(name) or self._alpn_from_file(name)
        if alt is not None:
            sslobj.context = alt

    def _alpn_from_file(self, name: str) -> ssl.SSLContext | None:
        """A tls-alpn-01 answer another worker is giving (one stat per handshake with SNI)."""
        if not name or "/" in name:
            return None
        path = challenge_folder(self.app.settings.data_path) / f"alpn-{name}.pem"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            self._alpn_files.pop(name, None)
            return None
        cached = self._alpn_files.get(name)
        if cached is None or cached[0] != mtime:
            ctx = self._new_alpn_context()
            try:
                ctx.load_cert_chain(path)
            except (OSError, ssl.SSLError):
                return None
            self._alpn_files[name] = cached = (mtime, ctx)
        return cached[1]

    @contextmanager
    def _order_lock(self) -> Iterator[bool]:
        """True when this process may order; False while another one does."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.folder / "order.lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- ordering (blocking) ---------------------------------------------------------
    def _client(self) -> tuple[client.ClientV2, jose.JWK]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        account_path = self.folder / "account.pem"
        if not account_path.exists():
            _write_private(account_path, _pem(rsa.generate_private_key(65537, 2048)))
        key = jose.JWKRSA(key=serialization.load_pem_private_key(account_path.read_bytes(), None))
        verify: bool | str = self.settings.ca_file or True
        net = client.ClientNetwork(key, verify_ssl=verify, user_agent="postbote")  # type: ignore[arg-type]
        try:
            directory = client.ClientV2.get_directory(self.settings.directory, net)
        except Exception as exc:  # requests' many errors: unreachable, TLS, bad JSON
            raise AcmeFailure(f"cannot read the ACME directory {self.settings.directory}: {exc}") from None
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(email=self.settings.email or None,
                                                          terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as exc:  # the key has an account already (RFC 8555 §7.3.1)
            net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        return acme, key

    def _issue(self, names: list[str], force: bool) -> Issued | None:
        with self._order_lock() as mine:
            if not mine:
                return None
            stored = self._stored()  # another worker may have renewed while we waited
            if stored is not None and not force and set(stored.names) == set(names) and \
                    stored.not_after - datetime.timedelta(days=self.settings.renew_days) > \
                    datetime.datetime.now(datetime.timezone.utc):
                return stored
            event(log, "acme order", names=",".join(names), renewal=stored is not None)
            return self._order(names)

    def _order(self, names: list[str]) -> Issued:
        try:
            acme, account_key = self._client()
            cert_key = ec.generate_private_key(ec.SECP256R1())
            csr = crypto_util.make_csr(_pem(cert_key), names)
            order = acme.new_order(csr)
            answered: list[tuple[str, Path]] = []
            try:
                for authz in order.authorizations:
                    if authz.body.status == messages.STATUS_VALID:
                        continue  # reused authorization (RFC 8555 §7.1.4)
                    answered.append(self._answer(acme, account_key, authz))
                deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
                order = acme.poll_and_finalize(order, deadline)
            finally:
                for key, path in answered:
                    self.http_challenges.pop(key, None)
                    self.alpn_contexts.pop(key, None)
                    path.unlink(missing_ok=True)
        except errors.Error as exc:
            raise AcmeFailure(f"order for {', '.join(names)}: {exc}") from None
        except messages.Error as exc:
            raise AcmeFailure(f"order for {', '.join(names)}: {exc.detail or exc.typ}") from None
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Key first: a crash in between leaves a key that does not match the old cert, which
        # _stored() reads as due for renewal, never a cert without its key.
        _write_private(self.folder / "key.pem", _pem(cert_key))
        _write_private(self.folder / "cert.pem", order.fullchain_pem.encode())
        stored = self._stored()
        assert stored is not None
        return stored

    def _answer(self, acme: client.ClientV2, account_key: jose.JWK,
                authz: messages.AuthorizationResource) -> tuple[str, Path]:
        """Publish the answer (memory and file) and tell the CA; returns its key and file."""
        name = authz.body.identifier.value
        wanted = self.settings.challenge
        for challb in authz.body.challenges:
            typ = challb.chall.typ if not isinstance(challb.chall, challenges.UnrecognizedChallenge) \
                else challb.chall.jobj.get("type")
            if typ != wanted:
                continue
            if wanted == "http-01":
                response, validation = challb.chall.response_and_validation(account_key)
                token = challb.chall.encode("token")
                self.http_challenges[token] = validation
                path = self._challenge_file(f"http-{token}", validation.encode())
                acme.answer_challenge(challb, response)
                return token, path
            token = challb.chall.jobj["token"]
            thumbprint = jose.b64encode(account_key.public_key().thumbprint(hash_function=hashes.SHA256)).decode()
            cert_pem, key_pem = alpn_certificate(name, f"{token}.{thumbprint}")
            path = self._challenge_file(f"alpn-{name.lower()}.pem", cert_pem + key_pem)
            ctx = self._new_alpn_context()
            ctx.load_cert_chain(path)
            self.alpn_contexts[name.lower()] = ctx
            acme.answer_challenge(challb, challenges.HTTP01Response(key_authorization=f"{token}.{thumbprint}"))
            return name.lower(), path
        raise AcmeFailure(f"the CA offers no {wanted} challenge for {name}")

    def _challenge_file(self, name: str, data: bytes) -> Path:
        folder = challenge_folder(self.app.settings.data_path)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(folder / name, data)
        return folder / name

    @staticmethod
    def _new_alpn_context() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §3: TLS 1.2 or newer
        ctx.set_alpn_protocols([ACME_TLS_ALPN])
        return ctx
