#!/usr/bin/env bash
# Regenerate the README's and docs/models.md's sample grids (docs/img/*-grid.png) with
# `synthmed visualize` itself, from a site that follows this repository's committed index.
#
#   bash scripts/readme-images.sh [SITE_DIR]
#
# SITE_DIR (default: a temporary folder, removed afterwards) is created with
# `synthmed init --upstream public=<this repo>` and synced; an existing site there is reused.
# Everything runs on the CPU; seeds are fixed, so the pictures are reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SYNTHMED=${SYNTHMED:-$REPO/.venv/bin/synthmed}
OUT=$REPO/docs/img
if [ $# -ge 1 ]; then
  SITE=$1
else
  SITE=$(mktemp -d)/site
  trap 'rm -rf "$(dirname "$SITE")"' EXIT
fi
if [ ! -f "$SITE/site.toml" ]; then
  "$SYNTHMED" init "$SITE" --upstream "public=$REPO"
fi
export SYNTHMED_HOME=$SITE
"$SYNTHMED" sync
vis() { "$SYNTHMED" visualize --device cpu "$@"; }
# 16 IHC patches (64x64, shown 4x)
vis ihc-patch-dcgan -n 16 --seed 0 -o "$OUT/ihc-patch-dcgan-grid.png"
# the medigan-1 twin: the same weights, the same grid
vis ihc-patch-dcgan-medigan -n 16 --seed 0 -o "$OUT/ihc-patch-dcgan-medigan-grid.png"
# 16 fundus patches with vessels (32x32, shown 8x)
vis retina-patch-ddpm -n 16 --seed 0 --param label=vessel -o "$OUT/retina-patch-ddpm-grid.png"
# phantom: 8 2D slices, lesion masks outlined (CT brain window 40,80: the default for a head CT)
vis phantom-lesion -n 8 --seed 0 -o "$OUT/phantom-lesion-grid.png"
ls -l "$OUT"/*-grid.png
