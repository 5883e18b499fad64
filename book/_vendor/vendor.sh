#!/usr/bin/env bash
# Refresh the vendored widget JavaScript in book/_vendor/ from the npm registry.
# Needs node/npm and network; the results are committed so that building the book needs neither.
# Usage: bash book/_vendor/vendor.sh   (from anywhere); then update the versions and sums in
# VENDORED.md and rebuild the book (make book) and run the browser test.
set -euo pipefail
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.15   # 1.0.x reads ipywidgets 8.1 widget state
REQUIREJS=requirejs@2.3.8
MATHJAX=mathjax@3.2.2   # Sphinx 7 writes MathJax 3 configuration

here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "$HTML_MANAGER" "$REQUIREJS" "$MATHJAX" >/dev/null
mkdir hm rjs mj
tar -xzf jupyter-widgets-html-manager-*.tgz -C hm
tar -xzf requirejs-*.tgz -C rjs
tar -xzf mathjax-*.tgz -C mj

cp rjs/package/require.js "$here/require.js"
cp hm/package/dist/embed-amd.js "$here/embed-amd.js"
# embed-amd.js loads its Font Awesome fonts (hashed names) relative to the page; keep only woff2,
# which every browser that runs the widgets supports.
rm -f "$here"/*.woff2
cp hm/package/dist/*.woff2 "$here/"
# Notices of the third-party code bundled in the html-manager dist (the package ships it next to
# embed.js; embed-amd.js bundles the same libraries). require.js carries its licence in its header.
cp hm/package/dist/embed.js.LICENSE.txt "$here/"
# MathJax: the one combined component Sphinx loads, and the CHTML fonts it fetches from
# [its own folder]/output/chtml/fonts/woff-v2.
rm -rf "$here/mathjax" && mkdir -p "$here/mathjax/output/chtml/fonts"
cp mj/package/es5/tex-mml-chtml.js mj/package/LICENSE "$here/mathjax/"
cp -r mj/package/es5/output/chtml/fonts/woff-v2 "$here/mathjax/output/chtml/fonts/"
cd "$here" && sha256sum mathjax/tex-mml-chtml.js require.js embed-amd.js ./*.woff2 embed.js.LICENSE.txt
