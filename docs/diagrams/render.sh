#!/bin/sh
# docs/diagrams/render.sh [OUTDIR] - render every Graphviz source of this
# directory (*.dot) to SVG and PNG with dot (Debian package graphviz).
#
# The images are committed next to their sources; t/190-docs.t renders the
# sources again into a temporary directory (this script with OUTDIR) and
# fails when a committed image differs.  After changing a .dot file, run
# this script and commit the .dot, .svg and .png together.

set -eu

src=$(cd "$(dirname "$0")" && pwd)
out=${1:-$src}

command -v dot >/dev/null 2>&1 || {
    echo "render.sh: dot not found (apt-get install graphviz)" >&2
    exit 1
}

mkdir -p "$out"

found=0
for f in "$src"/*.dot; do
    [ -e "$f" ] || continue
    found=1
    name=$(basename "$f" .dot)
    dot -Tsvg "$f" -o "$out/$name.svg"
    dot -Tpng "$f" -o "$out/$name.png"
done

if [ "$found" = 0 ]; then
    echo "render.sh: no .dot file in $src" >&2
    exit 1
fi
