#!/bin/sh
# bench/cnn/run.sh - the image benchmark of issue 4: the same CNN in kpipe and
# in PyTorch 1.13 on Fashion-MNIST, side by side, plus OpenBLAS's sgemm peak.
#
#   sh bench/cnn/run.sh                 (about 10 minutes on a quiet machine)
#   EPOCHS=1 sh bench/cnn/run.sh        (a quick check)
#
# Steps, each writing into OUT (default bench/out/cnn):
#   1. data: configs/fmnist_to_kaggle.py writes the Kaggle layout (PNGs +
#      CSVs) of Debian's dataset-fashion-mnist into DATA (default
#      OUT/fmnist), timed into OUT/convert.json; skipped when DATA/STAMP
#      matches this script's arguments and the converter's checksum.
#   2. sgemm: bench/cnn/sgemm_peak.c, OpenBLAS sgemm GFLOP/s at 2048^3 on 2
#      threads, once per kernel choice in SGEMM_CORES (default "env unset
#      auto": the environment's OPENBLAS_CORETYPE as it is, unset, and the
#      kernels the kpipe binary picks) -> OUT/sgemm.jsonl.
#   conv: bench/cnn/conv_bench.c (kpipe's conv2d kernels against the sgemm
#      peak), built as its header says -> OUT/conv_bench.txt; a build or run
#      failure is reported and the other steps go on.
#   3. PyTorch: bench/cnn/torch_cnn.py on DATA, EPOCHS epochs, THREADS
#      threads, hflip TTA -> OUT/torch.log, OUT/torch.json.
#   4. kpipe: the images stage, then bench/cnn/kpipe_cnn.c -> OUT/kpipe.json
#      (see step_kpipe below).
#   5. bench/cnn/report.py OUT -> OUT/results.md (tables and machine).
# The steps run one after the other, never two at once; the report gives the
# load average and, per epoch, how many cores other processes used.
#
# Environment: OUT, DATA, EPOCHS (5), THREADS (2), TORCH_MALLOC (default:
# PyTorch as installed; keep: glibc keeps freed memory, see torch_cnn.py),
# SGEMM_CORES, KPIPE (./kpipe), CNN_STEPS (default "data sgemm conv torch kpipe":
# the steps to run; the report always runs), TRAIN_LIMIT / TEST_LIMIT (a
# subset, for trying the script: the numbers are then not the benchmark's).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/bench/out/cnn}
DATA=${DATA:-$OUT/fmnist}
EPOCHS=${EPOCHS:-5}
THREADS=${THREADS:-2}
TORCH_MALLOC=${TORCH_MALLOC:-default}
SGEMM_CORES=${SGEMM_CORES:-env unset auto}
KPIPE=${KPIPE:-$ROOT/kpipe}
CNN_STEPS=${CNN_STEPS:-data sgemm conv torch kpipe}
TRAIN_LIMIT=${TRAIN_LIMIT:-}
TEST_LIMIT=${TEST_LIMIT:-}
PY=/usr/bin/python3
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

die() { echo "bench/cnn/run.sh: $*" >&2; exit 1; }

want() { case " $CNN_STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

now_ns() { date +%s%N; }

# 1. The Kaggle folder, reused when its STAMP says it was made the same way.
step_data() {
    args="--out $DATA${TRAIN_LIMIT:+ --train-limit $TRAIN_LIMIT}${TEST_LIMIT:+ --test-limit $TEST_LIMIT}"
    stamp="$(sha256sum "$ROOT/configs/fmnist_to_kaggle.py" | cut -c1-16) $args"
    if [ -f "$DATA/STAMP" ] && [ "$(cat "$DATA/STAMP")" = "$stamp" ]; then
        echo "== data: $DATA is up to date (STAMP matches)"
        return
    fi
    echo "== data: $PY configs/fmnist_to_kaggle.py $args"
    rm -f "$DATA/STAMP"
    t0=$(now_ns)
    # shellcheck disable=SC2086  # args is a list of words without spaces
    "$PY" "$ROOT/configs/fmnist_to_kaggle.py" $args
    t1=$(now_ns)
    sync
    n=$(find "$DATA/train" "$DATA/test" -name '*.png' | wc -l)
    bytes=$(du -s --apparent-size -B1 "$DATA" | cut -f1)
    disk=$(du -s -B1 "$DATA" | cut -f1)
    printf '{"seconds": %s, "pngs": %s, "bytes": %s, "disk_bytes": %s, "jobs": %s, "args": "%s"}\n' \
        "$(awk "BEGIN {printf \"%.2f\", ($t1 - $t0) / 1e9}")" "$n" "$bytes" "$disk" "$(nproc)" \
        "$args" > "$OUT/convert.json"
    cat "$OUT/convert.json"
    echo "$stamp" > "$DATA/STAMP"
}

# 2. OpenBLAS's sgemm peak for each kernel choice.
step_sgemm() {
    mkdir -p "$OUT/bin"
    cc -std=c11 -O2 -Wall -Wextra -Werror "$ROOT/bench/cnn/sgemm_peak.c" -ldl -o "$OUT/bin/sgemm_peak"
    : > "$OUT/sgemm.jsonl"
    for core in $SGEMM_CORES; do
        echo "== sgemm: --core $core"
        "$OUT/bin/sgemm_peak" --core "$core" --n 2048 --threads "$THREADS" --reps 7 | tee -a "$OUT/sgemm.jsonl"
    done
}

# conv: kpipe's conv2d kernels (bench/cnn/conv_bench.c, another helper's),
# with the kernels the kpipe binary picks; not fatal while it is unfinished.
step_conv() {
    rm -f "$OUT/conv_bench.txt"
    [ -f "$ROOT/bench/cnn/conv_bench.c" ] || { echo "== conv: no bench/cnn/conv_bench.c"; return; }
    mkdir -p "$OUT/bin"
    echo "== conv: bench/cnn/conv_bench.c"
    # shellcheck disable=SC2046  # pkg-config prints several words
    if ! (cd "$ROOT" && cc -std=c11 -D_GNU_SOURCE -O2 -g bench/cnn/conv_bench.c models/nn/conv.c \
            lib/parallel.c lib/err.c $(pkg-config --cflags --libs openblas) -lpthread -lm \
            -o "$OUT/bin/conv_bench"); then
        echo "== conv: build failed (skipped)"
        return
    fi
    core=${OPENBLAS_CORETYPE:-$(sed -n 's/.*"core_request": "auto", "OPENBLAS_CORETYPE": "\([^"]*\)".*/\1/p' \
        "$OUT/sgemm.jsonl" 2>/dev/null | head -n 1)}
    if OPENBLAS_CORETYPE=${core:-Cooperlake} "$OUT/bin/conv_bench" "$THREADS" > "$OUT/conv_bench.txt"; then
        cat "$OUT/conv_bench.txt"
    else
        echo "== conv: conv_bench failed (skipped)"
        rm -f "$OUT/conv_bench.txt"
    fi
}

# 3. PyTorch.
step_torch() {
    echo "== PyTorch: $EPOCHS epochs, $THREADS threads, malloc $TORCH_MALLOC"
    "$PY" "$ROOT/bench/cnn/torch_cnn.py" --data "$DATA" --epochs "$EPOCHS" --threads "$THREADS" \
        --tta hflip --malloc "$TORCH_MALLOC" --json "$OUT/torch.json" \
        ${TRAIN_LIMIT:+--train-limit "$TRAIN_LIMIT"} ${TEST_LIMIT:+--test-limit "$TEST_LIMIT"} \
        | tee "$OUT/torch.log"
}

# 4. kpipe: the images stage decodes DATA once (kpipe run on a generated
# config), then bench/cnn/kpipe_cnn.c trains the same network on every train
# image with kpipe's cnn model and scores the test images (plain and with
# hflip TTA), timing each epoch's training loop as torch_cnn.py does.
step_kpipe() {
    rm -f "$OUT/kpipe.json"
    [ -x "$KPIPE" ] || die "no kpipe binary at $KPIPE (run make first)"
    mkdir -p "$OUT/bin"
    # shellcheck disable=SC2046  # pkg-config prints several words
    (cd "$ROOT" && cc -std=c11 -D_GNU_SOURCE -O2 -g $(pkg-config --cflags openblas) \
        bench/cnn/kpipe_cnn.c pipeline/blas_lazy.c build/libkpipe.a \
        $(pkg-config --libs yaml-0.1 libpng libcurl jansson libxxhash) -lcsv -lm -lpthread -ldl \
        -o "$OUT/bin/kpipe_cnn") || die "cannot build bench/cnn/kpipe_cnn.c (run make first)"
    cat > "$OUT/fmnist_bench.yaml" <<YAML
competition:
  name: fmnist-bench
  train: $DATA/train.csv
  test: $DATA/test.csv
  sample_submission: $DATA/sample_submission.csv
  id: id
  target: label
  task: multiclass
  metric: accuracy
stages:
  images: {type: images, train_dir: $DATA/train, test_dir: $DATA/test}
YAML
    rm -rf "$OUT/runs"
    echo "== kpipe: images stage, then $EPOCHS epochs on $THREADS threads"
    "$KPIPE" run "$OUT/fmnist_bench.yaml" | tee "$OUT/kpipe.log"
    "$OUT/bin/kpipe_cnn" "$OUT/runs/fmnist_bench/images/dataset.safetensors" "$DATA/test_labels.csv" \
        --epochs "$EPOCHS" --threads "$THREADS" --tta hflip | tee -a "$OUT/kpipe.log"
    tail -n 1 "$OUT/kpipe.log" > "$OUT/kpipe.json"
}

main() {
    mkdir -p "$OUT"
    "$PY" -c 'import torch, numpy, PIL' 2>/dev/null ||
        die "needs Debian's python3-torch, python3-numpy and python3-pil"
    [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
        die "needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
    cut -d ' ' -f 1-3 /proc/loadavg > "$OUT/loadavg_before"
    date -u '+%Y-%m-%d %H:%M UTC' > "$OUT/date"
    if want data; then step_data; fi
    if want sgemm; then step_sgemm; fi
    if want conv; then step_conv; fi
    if want torch; then step_torch; fi
    if want kpipe; then step_kpipe; fi
    "$PY" "$ROOT/bench/cnn/report.py" "$OUT" > "$OUT/results.md"
    cat "$OUT/results.md"
}

main "$@"
