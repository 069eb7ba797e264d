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
)

missing=()
for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "missing Debian packages for the tests: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

if [ -x scripts/fetch-corpus.sh ]; then
    scripts/fetch-corpus.sh
fi
