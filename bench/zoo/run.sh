#!/bin/sh
# bench/zoo/run.sh - kpipe's model zoo against its Python anchors (issue 3,
# "Proof on real data"): XGBoost 1.7 hist for gbdt, scikit-learn 1.2 for the
# rest, the same data, folds and hyperparameters, 2 threads each.
#
#   sh bench/zoo/run.sh                     (make bench-zoo)
#   sh bench/zoo/run.sh breast_cancer wine  (only those data sets' rows; no stack)
#
# Steps (everything under bench/out/zoo/, git-ignored):
#   1. bench/zoo/make_data.py: Kaggle folders in data/ (scikit-learn's bundled
#      breast cancer, digits, wine, diabetes; the repository's Titanic; a
#      generated 500,000 x 50 binary problem and its 50,000-row subsample).
#      Kept between runs (a STAMP file per folder); the first run spends
#      ~1.5 minutes writing synth500k's CSVs.
#   2. bench/zoo/bench.py: per data set a config (configs/NAME.yaml) and per
#      row `kpipe run -j 1 --only STAGE`, then the anchor on the same
#      dataset.safetensors and folds.safetensors (rows.json).
#   3. bench/zoo/stack.py: every family + a logistic stacker, `kpipe run -j 2`
#      from cold against StackingClassifier(n_jobs=2) (stack.json).
#   4. bench/zoo/report.py: results.md (machine, versions, tables).
#
# Environment: KPIPE (./kpipe), BENCH_OUT (bench/out/zoo), ZOO_REPEATS (3:
# times each small row is run, fastest kept, unless its 5 fits took more than
# ZOO_REPEAT_UNDER_S = 2 s), ZOO_REPEATS_SYNTH (1), ZOO_NO_STACK=1 (skip 3),
# ZOO_STACKS ("synth50k breast_cancer").
# The anchors get OPENBLAS_CORETYPE=Cooperlake when the CPU has avx512_bf16:
# Debian's OpenBLAS 0.3.21 does not know this CPU model and otherwise falls
# back to its generic Prescott kernels (kpipe does the same for itself in
# pipeline/blas_lazy.c).  OMP_WAIT_POLICY=PASSIVE unless set (see below).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench/out/zoo}
KPIPE=${KPIPE:-$ROOT/kpipe}
PY=/usr/bin/python3
export KPIPE
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

die() { echo "bench/zoo/run.sh: $*" >&2; exit 1; }

[ -x "$KPIPE" ] || die "no kpipe binary at $KPIPE (run make first)"
"$PY" -c 'import numpy, sklearn, xgboost' 2>/dev/null ||
    die "needs python3-numpy, python3-sklearn and python3-xgboost (Debian)"
if grep -qw avx512_bf16 /proc/cpuinfo && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    OPENBLAS_CORETYPE=Cooperlake
    export OPENBLAS_CORETYPE
fi
# XGBoost's OpenMP threads busy-wait at barriers by default: with any other
# work on the machine a 0.3 s fit took 25 s.  Passive waiting cost nothing
# measurable on the quiet machine (breast cancer 0.08 s either way, 100,000 x 50
# with 50 depth-8 trees 3.6-3.9 s either way); kpipe's threads never spin.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export OMP_WAIT_POLICY

machine() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //')," \
         "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); kernel $(uname -sr)"
    echo "- kpipe: $("$KPIPE" --version | head -n 1) (tree at commit" \
         "$(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo unknown)$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' plus uncommitted changes')," \
         "binary built $(date -u -r "$KPIPE" '+%Y-%m-%d %H:%M UTC')); models: $("$KPIPE" models | awk 'NR > 1 && NF && !/^`/ {printf "%s%s", s, $1; s = ", "}')"
    echo "- kpipe's OpenBLAS: $("$KPIPE" --version | sed -n 2p)"
    "$PY" -c '
import platform, numpy, scipy, sklearn, xgboost, threadpoolctl
blas = [i for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"]
print("- anchors: Python %s, numpy %s, scipy %s, scikit-learn %s, xgboost %s; OpenBLAS %s kernels %s (OPENBLAS_CORETYPE=%s)" % (
    platform.python_version(), numpy.__version__, scipy.__version__, sklearn.__version__,
    xgboost.__version__, blas[0]["version"] if blas else "?", blas[0].get("architecture", "?") if blas else "?",
    __import__("os").environ.get("OPENBLAS_CORETYPE", "unset")))
print("- anchors\x27 OpenMP (XGBoost): OMP_WAIT_POLICY=%s" % __import__("os").environ.get("OMP_WAIT_POLICY", "unset"))'
    echo "- threads: kpipe run -j 1 (each fit: the runner's budget of $(nproc) / 1 threads); anchors n_jobs=2 / nthread=2 and 2 OpenBLAS threads; the stack: kpipe run -j 2 (1 thread per task) against StackingClassifier(n_jobs=2) with single-threaded members"
    echo "- load average before the runs: $(cut -d ' ' -f 1-3 /proc/loadavg)"
}

main() {
    mkdir -p "$OUT"
    t0=$(date +%s)
    "$PY" "$ROOT/bench/zoo/make_data.py" "$OUT/data" "$@"
    t1=$(date +%s)
    machine > "$OUT/machine.md"
    if [ $# -eq 0 ]; then
        rm -f "$OUT/rows.json" "$OUT/stack.json"
    fi
    "$PY" "$ROOT/bench/zoo/bench.py" "$OUT" "$@"
    if [ $# -eq 0 ] && [ "${ZOO_NO_STACK:-0}" != 1 ]; then
        # shellcheck disable=SC2086
        "$PY" "$ROOT/bench/zoo/stack.py" "$OUT" ${ZOO_STACKS:-synth50k breast_cancer}
    fi
    t2=$(date +%s)
    echo "- harness wall time $((t2 - t1)) s (plus $((t1 - t0)) s making data); the" \
         "other CPU columns below show what other processes used meanwhile" >> "$OUT/machine.md"
    echo "- reproduce: \`sh bench/zoo/run.sh\` (or \`make bench-zoo\`)" >> "$OUT/machine.md"
    "$PY" "$ROOT/bench/zoo/report.py" "$OUT"
}

main "$@"
