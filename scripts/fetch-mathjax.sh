#!/usr/bin/env bash
# MathJax 3 from the npm registry, vendored so that offline readers of the book see rendered math.
set -euo pipefail
dest=${1:-_vendor}
[ -s "$dest/mathjax/tex-mml-chtml.js" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent mathjax@3 >/dev/null && tar xzf mathjax-*.tgz)
mkdir -p "$dest"
rm -rf "$dest/mathjax"
mv "$work/package/es5" "$dest/mathjax"
echo "fetch-mathjax: vendored MathJax into $dest/mathjax"
