#!/usr/bin/env bash
# Install what the test suite needs beyond Python packages: Debian packages
# (real peers and clients) and the SpamAssassin corpus. Under CI=true any
# failure here fails the run; nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive: command -> package.
declare -A NEED=(
    [node]=nodejs
    [npm]=npm
    [swaks]=swaks
    [fetchmail]=fetchmail
    [getmail]=getmail6
    [opendkim-testmsg]=opendkim-tools  # mail authentication: DKIM signing by another implementation
    [postfix]=postfix  # outbound queue: the remote MX, a relay and smtp-sink for bench/queue.py
    [mbsync]=isync  # IMAP: two-way sync by a real client
    [curl]=curl  # IMAP: curl's imap:// client
    [clamd]=clamav-daemon  # spam: the virus scanner, run privately by tests/filters (never freshclam)
    [rspamd]=rspamd  # spam: a real rspamd, run privately by tests/filters
    [chromium]=chromium  # operations: the admin pages in a real headless browser (tests/web)
    [chromedriver]=chromium-driver  # operations: Selenium drives Debian's Chromium through it
    [pebble]=pebble  # operations: the ACME test CA, run privately by tests/web/test_acme.py
    [sieve-test]=dovecot-sieve  # sieve: Pigeonhole's interpreter, to compare our actions with
    [sieve-connect]=sieve-connect  # sieve: a real ManageSieve client
)

missing=()
for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# IMAP: the Dovecot that bench/imap.py compares against (a program, not a command on PATH).
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        # outbound queue: Debian's Postfix unconfigured, so no system MTA takes port 25;
        # the tests run private instances with their own config dirs.
        if command -v debconf-set-selections >/dev/null; then
            echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        fi
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
        # spam: the tests start clamd and rspamd with their own configs on private ports;
        # the system services (and freshclam, which downloads signatures) must not run.
        for svc in clamav-daemon clamav-freshclam rspamd; do
            if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
                systemctl disable --now "$svc" >/dev/null 2>&1 || true
            elif [ -x "/etc/init.d/$svc" ]; then
                "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            fi
        done
    else
        echo "missing Debian packages for the tests: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

if [ -x scripts/fetch-corpus.sh ]; then
    scripts/fetch-corpus.sh
fi

# Mail authentication: the RFC 7208 SPF test suite.
scripts/fetch-spf-suite.sh
