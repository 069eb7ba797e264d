#!/usr/bin/env bash
# Fetch the RFC 7208 SPF test suite (the openspf project's YAML file), which
# the pyspf source distribution on PyPI carries, into .cache/spf-suite/.
# tests/mailauth/test_spf_suite.py serves its zone data from a DNS server on
# loopback and runs every case through postbote's SPF.
#
# Usage: scripts/fetch-spf-suite.sh   (from anywhere inside the project)
set -euo pipefail

version="2.0.14"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cache/spf-suite"

if [[ -f "$dest/rfc7208-tests.yml" ]]; then
    echo "SPF test suite already present in .cache/spf-suite"
    exit 0
fi
pip="$root/.venv/bin/pip"
[[ -x "$pip" ]] || pip="python3 -m pip"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
$pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    "pyspf==$version" -d "$work" >/dev/null
tar -xzf "$work"/pyspf-"$version".tar.gz -C "$work" \
    "pyspf-$version/test/rfc7208-tests.yml" "pyspf-$version/test/rfc7208-tests.LICENSE"
mkdir -p "$dest"
cp "$work/pyspf-$version/test/rfc7208-tests.yml" "$work/pyspf-$version/test/rfc7208-tests.LICENSE" "$dest/"
echo "fetched the RFC 7208 test suite into .cache/spf-suite"
