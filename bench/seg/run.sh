#!/bin/sh
# bench/seg/run.sh - the segmentation benchmark of issue 5: the same UNet
# (depth 3, base 16, transposed-conv decoder, BCE + soft Dice, Adam 1e-3,
# batch 32, no augmentation) in kpipe and in PyTorch 1.13, side by side, on
# configs/fmnist_segmentation.py's data: 10,000 train and 2,000 test 64 x 64
# images whose masks are the silhouettes of the tops among 1-3 pasted
# garments on clutter (a quarter of them empty).
#
#   sh bench/seg/run.sh                 (about 30 minutes on a quiet machine)
#   EPOCHS=1 TRAIN=2000 sh bench/seg/run.sh    (a quick check)
#
# Steps, each writing into OUT (default bench/out/seg), one after the other:
#   data    the Kaggle folder + bench.bin (skipped when DATA/STAMP matches)
#   torch   bench/seg/torch_unet.py on bench.bin -> OUT/torch.log, torch.json
#   kpipe   the images stage on DATA, then bench/seg/kpipe_unet.c -> kpipe.log, kpipe.json
#   report  bench/seg/report.py OUT -> OUT/results.md (ratio, Dice, machine)
# Both validate on the test images (their garments come from Fashion-MNIST's
# t10k set), score Kaggle's Dice per image (both empty = 1) and hflip TTA.
# Environment: OUT, DATA, EPOCHS (5), THREADS (2), TRAIN (10000), TEST (2000),
# KPIPE (./build/kpipe), SEG_STEPS (default "data torch kpipe").
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/bench/out/seg}
DATA=${DATA:-$OUT/data}
EPOCHS=${EPOCHS:-5}
THREADS=${THREADS:-2}
TRAIN=${TRAIN:-10000}
TEST=${TEST:-2000}
KPIPE=${KPIPE:-$ROOT/build/kpipe}
SEG_STEPS=${SEG_STEPS:-data torch kpipe}
PY=/usr/bin/python3
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

die() { echo "bench/seg/run.sh: $*" >&2; exit 1; }

want() { case " $SEG_STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

step_data() {
    args="--out $DATA --train-limit $TRAIN --test-limit $TEST --bench-bin"
    stamp="$(sha256sum "$ROOT/configs/fmnist_segmentation.py" | cut -c1-16) $args"
    if [ -f "$DATA/STAMP" ] && [ "$(cat "$DATA/STAMP")" = "$stamp" ]; then
        echo "== data: $DATA is up to date (STAMP matches)"
        return
    fi
    echo "== data: $PY configs/fmnist_segmentation.py $args"
    rm -f "$DATA/STAMP"
    # shellcheck disable=SC2086  # args is a list of words without spaces
    "$PY" "$ROOT/configs/fmnist_segmentation.py" $args
    echo "$stamp" > "$DATA/STAMP"
}

step_torch() {
    echo "== PyTorch: $EPOCHS epochs, $THREADS threads"
    "$PY" "$ROOT/bench/seg/torch_unet.py" --bin "$DATA/bench.bin" --epochs "$EPOCHS" \
        --threads "$THREADS" --valid "$TEST" --json "$OUT/torch.json" | tee "$OUT/torch.log"
}

step_kpipe() {
    [ -x "$KPIPE" ] || die "no kpipe binary at $KPIPE (run make first)"
    mkdir -p "$OUT/bin"
    # shellcheck disable=SC2046  # pkg-config prints several words
    (cd "$ROOT" && cc -std=c11 -D_GNU_SOURCE -O2 -g $(pkg-config --cflags openblas) \
        bench/seg/kpipe_unet.c pipeline/blas_lazy.c build/libkpipe.a \
        $(pkg-config --libs yaml-0.1 libpng libcurl jansson libxxhash zlib) -lcsv -lm \
        -lpthread -ldl -o "$OUT/bin/kpipe_unet") || die "cannot build bench/seg/kpipe_unet.c"
    cat > "$OUT/seg_bench.yaml" <<YAML
competition:
  name: seg-bench
  train: $DATA/train.csv
  test: $DATA/test.csv
  sample_submission: $DATA/sample_submission.csv
  id: img
  target: pixels
  task: segmentation
  metric: dice
stages:
  images: {type: images, train_dir: $DATA/train, test_dir: $DATA/test, rle_order: column}
YAML
    echo "== kpipe: images stage, then $EPOCHS epochs on $THREADS threads"
    "$KPIPE" run "$OUT/seg_bench.yaml" | tee "$OUT/kpipe.log"
    "$OUT/bin/kpipe_unet" "$OUT/runs/seg_bench/images/dataset.safetensors" \
        "$DATA/test_masks.csv" --epochs "$EPOCHS" --threads "$THREADS" depth=3 base=16 \
        loss=bce+dice batch=32 | tee -a "$OUT/kpipe.log"
    tail -n 1 "$OUT/kpipe.log" > "$OUT/kpipe.json"
}

main() {
    mkdir -p "$OUT"
    "$PY" -c 'import torch, numpy' 2>/dev/null || die "needs Debian's python3-torch and python3-numpy"
    cut -d ' ' -f 1-3 /proc/loadavg > "$OUT/loadavg_before"
    date -u '+%Y-%m-%d %H:%M UTC' > "$OUT/date"
    if want data; then step_data; fi
    if want torch; then step_torch; fi
    if want kpipe; then step_kpipe; fi
    cut -d ' ' -f 1-3 /proc/loadavg > "$OUT/loadavg_after"
    "$PY" "$ROOT/bench/seg/report.py" "$OUT" > "$OUT/results.md"
    cat "$OUT/results.md"
}

main "$@"
