#!/usr/bin/env bash
# The main job, on a fresh machine:
#   set up .venv, create a site whose upstream is this repository's index/, sync it
#   (fetch the index, mirror and verify every pinned artefact), test the models, generate
#   samples from each starter model and write a grid PNG per model, then measure every
#   starter with `synthmed evaluate` against site-local reference sets of held-out real
#   patches (offline extractor randconv-224) and show the results (status, search --rank),
#   then get a verified copy of each published dataset version and re-derive items of it from
#   its model (`synthmed dataset get`, `dataset verify`).
# Everything lands under ./site (the site) and ./out (samples and grids); override with
# SITE=... OUT=... N=... (samples per model), EVAL_N=... (samples per model for evaluate),
# VERIFY_N=... (items re-derived per dataset version), VERIFY_MAX_ABS=... (0: byte-identical only).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SITE=${SITE:-$REPO/site}
OUT=${OUT:-$REPO/out}
N=${N:-16}
EVAL_N=${EVAL_N:-200}
MODELS=${MODELS:-"ihc-patch-dcgan retina-patch-ddpm retina-patch-ldm retina-patch-dcgan phantom-lesion ihc-patch-dcgan-medigan retina-vessel-mask-dcgan retina-vessel-mask-tree retina-vessel-pix2pix retina-vessel-dualgan"}

bash scripts/setup.sh
SM=".venv/bin/synthmed"
export SYNTHMED_HOME="$SITE"

echo "== site: $SITE (upstream: $REPO, folder index/)"
if [ ! -f "$SITE/site.toml" ]; then
  $SM init "$SITE" --upstream "public=$REPO" --subfolder index --branch "$(git rev-parse --abbrev-ref HEAD)"
fi

echo "== sync: fetch the index, mirror and verify the artefacts"
$SM sync

echo "== test: run each mirrored starter model's test"
mkdir -p "$OUT"
# shellcheck disable=SC2086
$SM test $MODELS --report "$OUT/reports" || echo "   (a model test failed: see $OUT/reports/summary.md)"

echo "== generate: $N samples and a grid per model"
for m in $MODELS; do
  case "$m" in
    retina-vessel-pix2pix)  # takes a mask per sample: the masks stage I (the vessel tree) wrote above
      $SM generate "$m" --input "mask=$OUT/retina-vessel-mask-tree/mask" -o "$OUT/$m" --seed 0
      $SM visualize "$m" -n 16 --input "mask=$OUT/retina-vessel-mask-tree/mask" -o "$OUT/$m-grid.png" --seed 0 ;;
    retina-vessel-dualgan)  # the two-stage pipeline: image+mask pairs
      $SM generate "$m" -n "$N" -o "$OUT/$m" --seed 0
      $SM visualize "$m" -n 16 --outputs image,mask --side-by-side -o "$OUT/$m-grid.png" --seed 0 ;;
    *)
      $SM generate "$m" -n "$N" -o "$OUT/$m" --seed 0
      $SM visualize "$m" -n 16 -o "$OUT/$m-grid.png" --seed 0 ;;
  esac
done

echo "== evaluate: held-out real patches as site-local reference sets (never exported), $EVAL_N samples per model"
REFS="$OUT/reference-images"
.venv/bin/python recipes/reference_patches.py --out "$REFS" -n 500
# phantom-lesion has no real images: its reference is its own samples from other seeds
# (a self-consistency check: the values show the sampling noise floor, not realism)
$SM generate phantom-lesion -n 200 --seed 100000 --outputs image --param dims=2 -o "$REFS/phantom-seeds" --no-progress
$SM reference add retina-heldout "$REFS/retina-heldout" --replace
$SM reference add ihc-heldout "$REFS/ihc-heldout" --replace
$SM reference add phantom-seeds "$REFS/phantom-seeds/image" --replace
$SM evaluate retina-patch-ddpm retina-patch-ldm retina-patch-dcgan --reference retina-heldout -n "$EVAL_N" \
  --report "$OUT/evaluation/retina"
$SM evaluate ihc-patch-dcgan ihc-patch-dcgan-medigan --reference ihc-heldout -n "$EVAL_N" --report "$OUT/evaluation/ihc"
$SM evaluate phantom-lesion --reference phantom-seeds -n "$EVAL_N" --report "$OUT/evaluation/phantom"
$SM search --rank fd fundus

echo "== datasets: the published synthetic datasets this site mirrors: a verified copy of each version, and items re-derived from the pinned model"
$SM dataset list
# every version in the index, not only the newest that `dataset list` shows
for f in index/datasets/*/*.json; do
  d="public/$(basename "$(dirname "$f")")@$(basename "$f" .json)"
  rm -rf "$OUT/datasets/$d"
  $SM dataset get "$d" -o "$OUT/datasets/$d"
  # --max-abs 1: the retina pairs were published where torch ran other CPU kernels (most likely
  # AVX-512); on an AVX2-only CPU 7-15% of their stage II images re-derive one grey level off in
  # one or two values (docs/datasets.md). Each item still prints identical / within tolerance /
  # DIFFERENT.
  $SM dataset verify "$d" --samples "${VERIFY_N:-8}" --max-abs "${VERIFY_MAX_ABS:-1}"
done

$SM status || echo "   (status exits 3: the site is unhealthy, see the warnings above)"
echo
echo "site:    $SITE   (site.toml, catalog.db, store/, packages/, reports/)"
echo "samples: $OUT/<model>/<output>/ (PNG for images, NIfTI for volumes; synthmed.json provenance)"
echo "grids:   $(ls "$OUT"/*-grid.png | tr '\n' ' ')"
echo "reports: $OUT/reports/"
echo "datasets: $OUT/datasets/public/<id>@<version>/ (verified copies of every published dataset version; synthmed dataset show ID)"
echo "evaluation: $OUT/evaluation/*/evaluation.md (synthmed show REF lists the measured values)"
echo "browse:  $SM --site $SITE serve   (then open http://127.0.0.1:8070/)"
