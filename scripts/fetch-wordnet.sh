#!/usr/bin/env bash
# WordNet 3.0 in NLTK's layout from Debian's packages (nltk.download needs a network we lack).
# Debian's wordnet-base lacks `lexnames`, which we rebuild from its man page (lexnames(5)).
set -euo pipefail
dest=${1:-build/nltk_data}
wn="$dest/corpora/wordnet"
[ -s "$wn/lexnames" ] && [ -s "$wn/index.sense" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
download() { (cd "$work" && apt-get download -qq wordnet-base wordnet-sense-index >/dev/null 2>&1); }
if ! download; then
  # a machine whose package lists were never fetched: fetch them once, then retry
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
  download
fi
for f in "$work"/*.deb; do dpkg -x "$f" "$work/unpacked"; done
mkdir -p "$wn"
cp "$work"/unpacked/usr/share/wordnet/* "$wn/"
cp "$work"/unpacked/usr/share/doc/wordnet-base/copyright "$wn/LICENSE" 2>/dev/null || true
zcat "$work/unpacked/usr/share/man/man5/lexnames.5WN.gz" | awk -F'\t' '
  /^[0-9][0-9]\t/ { gsub(/ /, "", $2); split($2, a, ".");
    pos = (a[1] == "noun") ? 1 : (a[1] == "verb") ? 2 : (a[1] == "adj") ? 3 : 4;
    printf "%s\t%s\t%d\n", $1, $2, pos }' > "$wn/lexnames"
echo "fetch-wordnet: WordNet 3.0 in $wn ($(wc -l < "$wn/lexnames") lexicographer files)"
