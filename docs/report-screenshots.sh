#!/bin/bash
# The runs, page screenshots and figures of docs/report-and-tracking.md:
#   bash docs/report-screenshots.sh [BEFORE_REV]     (from the repository root; about 15 minutes on 2 cores)
# Extracts two caches of the shared real data with EfficientNet-Lite0, runs the same classify / compare /
# learning_curve / active / robustness commands with this tree and with BEFORE_REV's (git archive), and
# screenshots both pages at 1,400 px in headless Chromium. Writes docs/img/*.png (palette PNGs, < 200 KB).
set -euo pipefail
BEFORE_REV=${1:-main}
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
SHARED=${SHARED:-$ROOT/../shared}
WORK=$(mktemp -d)
export FEATURECACHE_FEATURES_DIR=$WORK/features
MODEL=$SHARED/models/efficientnet_lite0_imagenet_notop.keras
C=$FEATURECACHE_FEATURES_DIR/cats-vs-dogs-lite0-224px.h5
X=$FEATURECACHE_FEATURES_DIR/cifar10-lite0-224px.h5

"$PY" -m extract --data-dir "$SHARED/data/cats-vs-dogs-subset" --backbone "$MODEL" --augment flip --views 1 \
    --test-views 1 --out "$C"
"$PY" -m extract --data-dir "$SHARED/data/cifar10-subset/cifar-10-batches-py" --backbone "$MODEL" --limit 1500 --out "$X"

runs() {  # runs SRC OUT: every command, with the code in SRC
    (cd "$1"
     "$PY" -m classify --model lr --features "$C" --views none --out-dir "$2"
     "$PY" -m classify --model lr --features "$C" --out-dir "$2"
     "$PY" -m classify --model lr --features "$C" --tta --out-dir "$2"
     "$PY" -m classify --model lr --features "$C" --C auto --out-dir "$2"
     "$PY" -m classify.workflows.compare --features "$C" --model rf --model mlp --out-dir "$2"
     "$PY" -m classify.workflows.compare --features "$X" --model lr --model rf --model mlp --out-dir "$2"
     "$PY" -m classify --model lr --features "$X" --C auto --out-dir "$2"
     "$PY" -m classify --model lr --features "$X" --C 0.1 --out-dir "$2"
     "$PY" -m classify.workflows.learning_curve --model lr --features "$X" --seeds 2 --points 4 --min-size 200 --out-dir "$2"
     "$PY" -m classify.workflows.active --model lr --features "$X" --seeds 2 --initial 200 --batch 100 --budget 600 --out-dir "$2"
     run=$(ls "$2"/cats-vs-dogs-lite0-224px-lr-*-run.json | head -1)
     "$PY" -m classify.pixel.robustness --run "$run" --attack fgsm --attack pgd --pgd-steps 3 --limit 6 --out-dir "$2")
}

shot() {  # shot PAGE PNG: the page at a 1,400 px window
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
        --disable-sync --no-first-run --user-data-dir="$(mktemp -d)" --window-size=1400,1000 --screenshot="$2" \
        "file://$1"
}

small() {  # small SRC DST: a palette PNG under 200 KB, scaled down only if it has to be
    "$PY" - "$1" "$2" <<'PYEOF'
import io, sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
scale = 1.0
while True:
    out = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS) if scale < 1 else im
    buf = io.BytesIO()
    out.quantize(256).save(buf, "PNG", optimize=True)
    if buf.tell() < 200_000 or scale < 0.3:
        break
    scale *= 0.85
open(sys.argv[2], "wb").write(buf.getvalue())
PYEOF
}

git archive "$BEFORE_REV" | (mkdir -p "$WORK/before-src" && tar -x -C "$WORK/before-src")
runs "$WORK/before-src" "$WORK/before"
runs "$ROOT" "$WORK/after"
for kind in before after; do shot "$WORK/$kind/index.html" "$WORK/$kind.png"; small "$WORK/$kind.png" "docs/img/report-$kind.png"; done
A=$WORK/after
small "$(ls "$A"/cifar10-lite0-224px-lr-*-curves.png | head -1)" docs/img/fig-curves-lr.png
small "$(ls "$A"/cats-vs-dogs-lite0-224px-mlp-*-curves.png)" docs/img/fig-curves-mlp.png
small "$(ls "$A"/cifar10-lite0-224px-mlp-*-confusion.png)" docs/img/fig-confusion.png
small "$(ls "$A"/cifar10-lite0-224px-mlp-*-gallery.png)" docs/img/fig-gallery.png
small "$A/comparison.png" docs/img/fig-comparison.png
small "$(ls "$A"/*-learning-curve.png)" docs/img/fig-learning-curve.png
small "$(ls "$A"/*-active.png)" docs/img/fig-active.png
small "$(ls "$A"/*-robustness-*.png)" docs/img/fig-robustness.png
small "$(ls "$A"/*-adversarial-*.png)" docs/img/fig-adversarial.png
echo "runs and pages in $WORK"
