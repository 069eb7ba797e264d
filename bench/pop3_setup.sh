#!/usr/bin/env bash
# Install Dovecot's POP3 server for bench/pop3.py. The bench runs its own dovecot with a
# private config on a loopback port, so the system service is stopped and disabled.
set -euo pipefail
if ! command -v dovecot >/dev/null 2>&1 || [ ! -x /usr/lib/dovecot/pop3 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench needs dovecot-pop3d: run sudo apt-get install dovecot-pop3d" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dovecot-pop3d
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
    systemctl disable --now dovecot || true
fi
