"""The ``postbote`` command: serve, and administer domains, users and aliases.

Every administrative command opens the same store as the server (SQLite
allows several processes), so it works while ``postbote serve`` runs. Errors
are one line on stderr and a non-zero exit: 2 for usage and configuration,
1 for everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from postbote import __version__
from postbote.accounts.passwords import PasswordPolicyError, generate_app_password, hash_password
from postbote.config import ConfigError, Settings, load_settings
from postbote.listener import ListenError
from postbote.mail.address import AddressError, normalize_domain, parse_address
from postbote.store import Store, StoreError, open_store
from postbote.store.feedbus import FeedBus


class CliError(Exception):
    pass


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default, help="TOML configuration file")
    parser.add_argument("--data-dir", metavar="DIR", default=default, help="data folder (overrides data_dir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postbote", description="A complete mail server.")
    parser.add_argument("--version", action="version", version=f"postbote {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(sub: Any, name: str, help: str, fn: Callable, *args: tuple[tuple, dict]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _common(p, top=False)
        for a, kw in args:
            p.add_argument(*a, **kw)
        p.set_defaults(fn=fn)
        return p

    add(commands, "serve", "run the mail server in the foreground", cmd_serve,
        (("--workers",), {"type": int, "default": 1, "metavar": "N",
                          "help": "worker processes sharing the listening sockets (default 1; one per core)"}))

    def group(name: str, help: str) -> Any:
        p = commands.add_parser(name, help=help, description=help)
        return p.add_subparsers(dest="action", metavar="ACTION", required=True)

    domain = group("domain", "manage the domains postbote receives mail for")
    add(domain, "add", "add a domain", cmd_domain_add, (("name",), {}))
    add(domain, "list", "list domains", cmd_domain_list)
    add(domain, "del", "delete a domain (it must have no accounts or aliases)", cmd_domain_del, (("name",), {}))

    user = group("user", "manage accounts")
    pw = (("--password-stdin",), {"action": "store_true", "help": "read the password from standard input"})
    add(user, "add", "add an account", cmd_user_add, (("address",), {}), pw,
        (("--quota",), {"help": "storage quota, e.g. 500M or 2G (default: limits.default_quota)"}))
    add(user, "list", "list accounts", cmd_user_list, (("domain",), {"nargs": "?"}))
    add(user, "del", "delete an account and all its mail", cmd_user_del, (("address",), {}))
    add(user, "passwd", "set an account's password", cmd_user_passwd, (("address",), {}), pw)
    add(user, "quota", "set an account's storage quota (0: unlimited)", cmd_user_quota,
        (("address",), {}), (("quota",), {}))

    apps = group("app-password", "manage an account's app passwords (one per device)")
    add(apps, "add", "make a new app password and print it", cmd_app_add, (("address",), {}), (("name",), {}))
    add(apps, "list", "list an account's app passwords", cmd_app_list, (("address",), {}))
    add(apps, "del", "revoke an app password", cmd_app_del, (("address",), {}), (("name",), {}))

    alias = group("alias", "manage aliases (ADDRESS or @domain for a catch-all)")
    add(alias, "add", "deliver mail for ADDRESS to each TARGET", cmd_alias_add,
        (("address",), {}), (("targets",), {"nargs": "+", "metavar": "TARGET"}))
    add(alias, "list", "list aliases", cmd_alias_list, (("domain",), {"nargs": "?"}))
    add(alias, "del", "delete an alias (all its targets, or the ones named)", cmd_alias_del,
        (("address",), {}), (("targets",), {"nargs": "*", "metavar": "TARGET"}))

    mailbox = group("mailbox", "inspect mailboxes")
    add(mailbox, "list", "list an account's mailboxes with their counts", cmd_mailbox_list, (("address",), {}))

    # -- outbound queue --
    queue = group("queue", "inspect and manage the outbound queue")
    ids = (("queue_ids",), {"nargs": "*", "metavar": "QUEUE_ID", "help": "messages (default: all)"})
    add(queue, "list", "list queued messages with their recipients and last reply", cmd_queue_list)
    add(queue, "show", "show a queued message: entries, recipients, their state and last replies",
        cmd_queue_show, (("queue_id",), {"metavar": "QUEUE_ID"}))
    add(queue, "retry", "attempt delivery now", cmd_queue_retry, ids)
    add(queue, "hold", "stop delivery attempts until released", cmd_queue_hold, ids)
    add(queue, "release", "let held messages be delivered again", cmd_queue_release, ids)
    add(queue, "delete", "remove messages from the queue without delivering or bouncing them", cmd_queue_delete,
        (("queue_ids",), {"nargs": "+", "metavar": "QUEUE_ID"}))
    dkim = group("dkim", "manage DKIM signing keys")
    add(dkim, "generate", "make an Ed25519 and an RSA-2048 key for a domain and print their DNS records",
        cmd_dkim_generate, (("domain",), {}))
    dnsgroup = group("dns", "show the DNS records a domain needs")
    add(dnsgroup, "records", "print every record to publish for a domain (zone-file form)", cmd_dns_records,
        (("domain",), {}))
    # -- operations --
    add(dnsgroup, "check", "look up a domain's records now and say, per record, whether they are right",
        cmd_dns_check, (("domain",), {}))
    sieve = group("sieve", "manage an account's Sieve filter scripts (docs/sieve.md)")
    add(sieve, "put", "check a script and store it (an active script of that name stays active)",
        cmd_sieve_put, (("address",), {}), (("name",), {}),
        (("file",), {"metavar": "FILE", "help": "the script, or - for standard input"}))
    add(sieve, "activate", "make a script the one that runs at delivery", cmd_sieve_activate,
        (("address",), {}), (("name",), {}))
    add(sieve, "deactivate", "run no script at delivery", cmd_sieve_deactivate, (("address",), {}))
    add(sieve, "list", "list an account's scripts, the active one marked", cmd_sieve_list,
        (("address",), {}))
    add(sieve, "get", "print a script", cmd_sieve_get, (("address",), {}), (("name",), {}))
    admin = group("admin", "manage who may use the admin web interface and the API")
    add(admin, "add", "make an account an administrator", cmd_admin_add, (("address",), {}))
    add(admin, "del", "take an account's administrator rights away", cmd_admin_del, (("address",), {}))
    add(admin, "list", "list administrators", cmd_admin_list)
    add(admin, "token", "make an API token acting as an administrator; prints it once", cmd_admin_token,
        (("name",), {}), (("address",), {"help": "the administrator the token acts as"}))
    add(admin, "tokens", "list API tokens", cmd_admin_tokens)
    add(admin, "revoke", "revoke an API token", cmd_admin_revoke, (("name",), {}))
    return parser


# -- helpers ---------------------------------------------------------------------

def _address(text: str) -> str:
    try:
        return str(parse_address(text))
    except AddressError as exc:
        raise CliError(str(exc)) from None


def _alias_source(text: str) -> str:
    if text.startswith("@"):
        try:
            return "@" + normalize_domain(text[1:])
        except AddressError as exc:
            raise CliError(str(exc)) from None
    return _address(text)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("the passwords differ")
    else:
        raise CliError("no password: use --password-stdin, or run in a terminal")
    return password


def _hash(password: str) -> str:
    try:
        return hash_password(password)
    except PasswordPolicyError as exc:
        raise CliError(str(exc)) from None


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise CliError(f"invalid size {text!r}: expected a number with an optional K, M, G or T")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


async def _account(store: Store, address: str) -> Any:
    account = await store.get_account(_address(address))
    if account is None:
        raise CliError(f"no account {address}")
    return account


# -- commands ----------------------------------------------------------------------

def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    from postbote.app import run_forever
    from postbote.log import setup

    setup(settings.log.format, settings.log.level)
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.workers == 1:
        run_forever(settings)
    else:
        from postbote.workers import serve

        if serve(settings, args.workers):
            raise CliError("a worker failed; see the log above")


async def cmd_domain_add(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    try:
        name = normalize_domain(args.name)
    except AddressError as exc:
        raise CliError(str(exc)) from None
    await store.add_domain(name)
    print(f"added domain {name}")


async def cmd_domain_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    for d in await store.list_domains():
        print(d.name)


async def cmd_domain_del(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    await store.delete_domain(normalize_domain(args.name))
    print(f"deleted domain {args.name}")


async def cmd_user_add(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    address = _address(args.address)
    quota = parse_size(args.quota) if args.quota else settings.limits.default_quota
    password_hash = _hash(_read_password(args))
    await store.add_account(address, password_hash, quota)
    print(f"added account {address}")


async def cmd_user_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    for a in await store.list_accounts(normalize_domain(args.domain) if args.domain else None):
        quota = f"{a.quota}" if a.quota else "unlimited"
        print(f"{a.address}\tused={a.used}\tquota={quota}" + ("\tdisabled" if a.disabled else ""))


async def cmd_user_del(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    await store.delete_account(_address(args.address))
    print(f"deleted account {args.address}")


async def cmd_user_passwd(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    address = _address(args.address)
    await store.set_password(address, _hash(_read_password(args)))
    print(f"password changed for {address}")


async def cmd_user_quota(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    await store.set_quota(_address(args.address), parse_size(args.quota))
    print(f"quota of {args.address} set to {args.quota}")


async def cmd_app_add(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    secret = generate_app_password()
    await store.add_app_password(account.id, args.name, _hash(secret))
    print(secret)


async def cmd_app_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    for app in await store.list_app_passwords(account.id):
        print(app.name)


async def cmd_app_del(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    await store.delete_app_password(account.id, args.name)
    print(f"revoked app password {args.name}")


async def cmd_alias_add(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    source = _alias_source(args.address)
    for target in args.targets:
        await store.add_alias(source, _address(target))
    print(f"added alias {source} -> {', '.join(args.targets)}")


async def cmd_alias_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    for alias in await store.list_aliases(normalize_domain(args.domain) if args.domain else None):
        print(f"{alias.source}\t{alias.target}")


async def cmd_alias_del(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    source = _alias_source(args.address)
    for target in args.targets or [None]:
        await store.delete_alias(source, _address(target) if target else None)
    print(f"deleted alias {source}")


async def cmd_mailbox_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    for mb in await store.list_mailboxes(account.id):
        st = await store.mailbox_status(mb.id)
        role = f"\t{mb.special_use}" if mb.special_use else ""
        print(f"{mb.name}\tmessages={st.messages}\tunseen={st.unseen}\tsize={st.size}{role}")


# -- outbound queue ------------------------------------------------------------------

def _when(ts: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


async def cmd_queue_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    entries = await store.list_outbound()
    for e in entries:
        state = "held" if e.held else f"next {_when(e.next_attempt)}"
        print(f"{e.queue_id}\t{e.sender or '<>'}\t{e.domain}\t{' '.join(e.recipients)}\tattempts={e.attempts}"
              f"\t{state}\t{e.last_reply}")
    if not entries:
        print("queue is empty")


async def cmd_queue_show(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    entries = await store.get_outbound(args.queue_id)
    if not entries:
        raise CliError(f"no queued message {args.queue_id}")
    for e in entries:
        print(f"queue id:   {e.queue_id}\nsender:     {e.sender or '<>'}\ndomain:     {e.domain}\n"
              f"queued:     {_when(e.created)}\nattempts:   {e.attempts}\n"
              f"next:       {'held' if e.held else _when(e.next_attempt)}\nlast reply: {e.last_reply}")
        for r in e.recipients:
            print(f"  {r.address}\t{r.status}\t{r.last_reply}")
        print()


async def _each(ids: list[str], fn: Callable[[str | None], Awaitable[int]]) -> int:
    return sum([await fn(i) for i in ids]) if ids else await fn(None)


async def cmd_queue_retry(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    n = await _each(args.queue_ids, lambda q: store.retry_outbound(q, 0))
    print(f"{n} queue entries due now")


async def cmd_queue_hold(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    n = await _each(args.queue_ids, lambda q: store.set_outbound_held(q, True))
    print(f"{n} queue entries held")


async def cmd_queue_release(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    n = await _each(args.queue_ids, lambda q: store.set_outbound_held(q, False))
    print(f"{n} queue entries released")


async def cmd_queue_delete(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    n = await _each(args.queue_ids, lambda q: store.delete_outbound(q or ""))
    if not n:
        raise CliError(f"no queued message {' '.join(args.queue_ids)}")
    print(f"{n} queue entries deleted")


def _domain_arg(text: str) -> str:
    try:
        return normalize_domain(text)
    except AddressError as exc:
        raise CliError(str(exc)) from None


async def cmd_dkim_generate(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    from postbote.mailauth.keys import generate_keys

    domain = _domain_arg(args.domain)
    if await store.get_domain(domain) is None:
        raise CliError(f"{domain} is not one of our domains (add it with 'postbote domain add {domain}')")
    from postbote.queue.records import quoted

    for key in generate_keys(settings.data_path, domain):
        print(f"{key.selector}._domainkey.{domain}.\t3600\tIN\tTXT\t{quoted(key.dns_record())}")


async def cmd_dns_records(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    from postbote.mailauth.keys import load_keys
    from postbote.queue.records import dns_records

    domain = _domain_arg(args.domain)
    for line in dns_records(domain, settings.hostname, load_keys(settings.data_path, domain)):
        print(line)


# -- operations ----------------------------------------------------------------------

async def cmd_dns_check(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    from postbote.dns import Resolver
    from postbote.dnscheck import ERROR, check_domain

    domain = _domain_arg(args.domain)
    checks = await check_domain(Resolver(settings.dns), domain, settings.hostname, settings.data_path)
    width = max(len(c.record) for c in checks)
    for c in checks:
        print(f"{c.verdict.upper():8} {c.record:{width}}  {c.name}: {c.detail}")
        for found in c.found:
            print(f"{'':8} {'':{width}}    {found}")
    if any(c.verdict == ERROR for c in checks):
        raise CliError(f"{sum(c.verdict == ERROR for c in checks)} records of {domain} need fixing")


async def cmd_admin_add(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    await store.set_admin(account.id, True)
    print(f"{account.address} is an administrator")


async def cmd_admin_del(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    await store.set_admin(account.id, False)
    print(f"{account.address} is no longer an administrator")


async def cmd_admin_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    for account_id in await store.list_admins():
        account = await store.get_account_by_id(account_id)
        if account is not None:
            print(account.address)
    for address in settings.admin.accounts:
        print(f"{address}\t(admin.accounts in the config)")


async def cmd_admin_token(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    import secrets

    from postbote.web.api import token_hash

    account = await _account(store, args.address)
    if account.id not in await store.list_admins() and account.address not in settings.admin.accounts:
        raise CliError(f"{account.address} is not an administrator: run 'postbote admin add {account.address}' first")
    if not re.fullmatch(r"[\w.@+-]{1,64}", args.name):
        raise CliError("token names are 1-64 letters, digits or . @ + - _")
    token = "pbt_" + secrets.token_urlsafe(32)
    await store.add_api_token(args.name, token_hash(token), account.id)
    print(token)


async def cmd_admin_tokens(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    for token in await store.list_api_tokens():
        account = await store.get_account_by_id(token.account_id)
        used = _when(token.last_used) if token.last_used else "never used"
        print(f"{token.name}\t{account.address if account else '?'}\tcreated {_when(token.created)}\t{used}")


async def cmd_admin_revoke(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    if not await store.delete_api_token(args.name):
        raise CliError(f"no API token {args.name}")
    print(f"revoked API token {args.name}")


# -- sieve ---------------------------------------------------------------------------

class InvalidScript(Exception):
    """A script that ``sieve.parse`` refuses: a usage error, exit status 2."""


def _read_script(path: str) -> str:
    from postbote import sieve

    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidScript(f"{path}: a Sieve script must be UTF-8 text (RFC 5228 §2.2)") from None
    try:
        sieve.parse(text)
    except sieve.SieveError as exc:
        raise InvalidScript(f"{path}: {exc}") from None
    return text


async def cmd_sieve_put(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    text = _read_script(args.file)
    account = await _account(store, args.address)
    await store.sieve_put(account.id, args.name, text)
    print(f"stored script {args.name} for {account.address}")


async def cmd_sieve_activate(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    await store.sieve_activate(account.id, args.name)
    print(f"activated script {args.name} for {account.address}")


async def cmd_sieve_deactivate(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    await store.sieve_activate(account.id, None)
    print(f"no active script for {account.address}")


async def cmd_sieve_list(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    for script in await store.sieve_list(account.id):
        print(f"{script.name}\tactive" if script.active else script.name)


async def cmd_sieve_get(store: Store, args: argparse.Namespace, settings: Settings) -> None:
    account = await _account(store, args.address)
    text = await store.sieve_get(account.id, args.name)
    if text is None:
        raise CliError(f"no script {args.name} for {account.address}")
    sys.stdout.write(text)


async def _with_store(fn: Callable[..., Awaitable[None]], settings: Settings, args: argparse.Namespace) -> None:
    from postbote.app import ensure_domains

    store = open_store(settings.data_path, workers=2)
    await store.open()
    # A running server caches some of the store (active Sieve scripts): tell it what changed.
    bus = FeedBus(settings.data_path / "run" / "feed", name=f"admin-{os.getpid()}")
    bus.carry_changes(store.changes)
    bus.open(None)
    try:
        await ensure_domains(store, settings.domains)
        await fn(store, args, settings)
    finally:
        bus.close(None)
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
    except ConfigError as exc:
        print(f"postbote: {exc}", file=sys.stderr)
        return 2
    try:
        if args.fn is cmd_serve:
            cmd_serve(settings, args)
        else:
            asyncio.run(_with_store(args.fn, settings, args))
    except (ConfigError, InvalidScript) as exc:
        print(f"postbote: {exc}", file=sys.stderr)
        return 2
    except (CliError, StoreError, AddressError, ListenError) as exc:
        print(f"postbote: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. "postbote user list | head": not an error
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
