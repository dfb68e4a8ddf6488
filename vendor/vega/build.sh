#!/usr/bin/env bash
# Rebuild offline.html: the page template for `dvc plots show` / `dvc plots diff` with
# vega, vega-lite and vega-embed inlined, so the plots render without internet.
# The packages come from the npm registry (`npm pack`), at the versions that dvc-render's
# own page loads from a CDN; their licence files are copied beside the template.
set -euo pipefail
cd "$(dirname "$0")"
packages=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

scripts=""
for package in "${packages[@]}"; do
    name=${package%@*}
    (cd "$work" && npm pack --silent "$package" >/dev/null && mkdir "$name" && tar xzf "$name"-*.tgz -C "$name")
    cp "$work/$name/package/LICENSE" "LICENSE-$name"
    if grep -q '</script' "$work/$name/package/build/$name.min.js"; then
        echo "$name.min.js contains '</script': cannot inline it" >&2
        exit 1
    fi
    scripts+="<!-- $package from the npm registry, build/$name.min.js; licence: LICENSE-$name -->"$'\n'
    scripts+="<script>$(cat "$work/$name/package/build/$name.min.js")</script>"$'\n'
done

{
    cat <<'HEAD'
<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>MNIST pipeline plots</title>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
HEAD
    printf '%s' "$scripts"
    cat <<'TAIL'
</head>
<body>
    {plot_divs}
</body>
</html>
TAIL
} >offline.html.tmp
mv offline.html.tmp offline.html
echo "wrote $(pwd)/offline.html ($(wc -c <offline.html) bytes)"
