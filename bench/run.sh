#!/bin/sh
# bench/run.sh - kpipe's executor against GNU make and ninja on one generated graph.
#
#   sh bench/run.sh            (or: make bench)
#
# The graph (bench/exec/gen.py): one prep task, MODELS x FOLDS fit tasks
# needing prep, MODELS merge tasks needing their model's folds, one stack
# task needing every merge (480 x 5: 2,882 tasks).  Every task is trivial
# (cp, or bench/exec/catfiles), with the same command lines in every tool.
# Three scenarios, each at -j JOBS:
#   cold   from nothing (outputs and each tool's state removed before each run)
#   noop   re-run with everything up to date
#   touch  re-run after changing the content of input.txt: every task re-runs
# Wall times come from hyperfine (median of RUNS runs; NOOP_RUNS for noop),
# or from a timing loop here when hyperfine is missing.  Results:
# bench/out/exec/results.md (table) and bench/out/exec/*.json (raw times).
#
# Environment: JOBS (default: nproc), RUNS (3), NOOP_RUNS (10), MODELS (480),
# FOLDS (5), BENCH_OUT (bench/out/exec), KPIPE (./kpipe), TOOLS ("make
# ninja kpipe"), BENCH_NO_HYPERFINE=1 (the timing loop even with hyperfine
# installed), BENCH_SNAKEMAKE=1 adds snakemake (SNAKEMAKE_RUNS runs per
# scenario, default 1: one cold run of snakemake takes about 7 minutes).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench/out/exec}
KPIPE=${KPIPE:-$ROOT/kpipe}
JOBS=${JOBS:-$(nproc)}
RUNS=${RUNS:-3}
NOOP_RUNS=${NOOP_RUNS:-10}
MODELS=${MODELS:-480}
FOLDS=${FOLDS:-5}
TOOLS=${TOOLS:-make ninja kpipe}
SNAKEMAKE_RUNS=${SNAKEMAKE_RUNS:-1}
PY=/usr/bin/python3
HYPERFINE=0
if [ "${BENCH_NO_HYPERFINE:-0}" != 1 ] && command -v hyperfine >/dev/null 2>&1; then
    HYPERFINE=1
fi
if [ "${BENCH_SNAKEMAKE:-0}" = 1 ]; then
    TOOLS="$TOOLS snakemake"
fi

die() { echo "bench/run.sh: $*" >&2; exit 1; }

# The command each tool runs in its own folder OUT/TOOL.
tool_cmd() {
    case $1 in
    make) echo "make -j $JOBS" ;;
    ninja) echo "ninja -j $JOBS" ;;
    kpipe) echo "$KPIPE run -j $JOBS kpipe.yaml" ;;
    snakemake) echo "snakemake --cores $JOBS --quiet" ;;
    *) die "unknown tool $1" ;;
    esac
}

tool_version() {
    case $1 in
    make) make --version | head -n 1 ;;
    ninja) echo "ninja $(ninja --version)" ;;
    kpipe) echo "$("$KPIPE" --version 2>/dev/null | head -n 1 || echo "kpipe $(cat "$ROOT/VERSION")")" \
               "(tree at commit $(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo unknown)," \
               "binary built $(date -u -r "$KPIPE" '+%Y-%m-%d %H:%M UTC'))" ;;
    snakemake) echo "snakemake $(snakemake --version)" ;;
    esac
}

# Run in a tool's folder before each cold run: moves away everything a cold
# run must not find (outputs and each tool's own state).  Moved, not deleted:
# on ext4, creating thousands of files right after deleting thousands makes
# inode allocation skip the recently deleted ones, which slowed every tool's
# cold run by ~1.5 s (make: 3.4-3.8 s instead of 2.1-2.3 s).  The moved
# trees are deleted at the end.  sync: no write-back of the previous run's
# files during the timed one.
write_helpers() {
    cat > "$OUT/bin/clean.sh" <<'SH'
d=$(mktemp -d ../trash/cold.XXXXXX) || exit 1
for f in o runs .ninja_log .ninja_deps .snakemake; do
    if [ -e "$f" ]; then mv "$f" "$d/" || exit 1; fi
done
mkdir o && sync
SH
    cat > "$OUT/bin/touch.sh" <<'SH'
date +%s%N > input.txt && sync
SH
    mkdir -p "$OUT/trash"
}
CLEAN='sh ../bin/clean.sh'
TOUCH='sh ../bin/touch.sh'

# timeit NAME PREPARE RUNS CMD JSON: times CMD (run in the current folder)
# RUNS times, PREPARE before each run, raw times into JSON.  hyperfine runs
# CMD without a shell (-N), so no shell start-up is counted or subtracted.
timeit() {
    if [ "$HYPERFINE" = 1 ]; then
        if [ -n "$2" ]; then
            hyperfine -N --style basic --runs "$3" --prepare "$2" -n "$1" --export-json "$5" "$4"
        else
            hyperfine -N --style basic --runs "$3" --warmup 1 -n "$1" --export-json "$5" "$4"
        fi
        return
    fi
    times=""
    i=0
    while [ "$i" -lt "$3" ]; do
        [ -z "$2" ] || sh -c "$2"
        t0=$(date +%s%N)
        sh -c "$4" >/dev/null 2>&1 || die "$1 failed: $4"
        t1=$(date +%s%N)
        us=$(( (t1 - t0) / 1000 ))
        times="$times${times:+, }$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))"
        i=$((i + 1))
    done
    echo "{\"results\": [{\"command\": \"$1\", \"times\": [$times]}]}" > "$5"
    echo "$1: [$times] s"
}

# check_outputs CONTENT_FILE: o/stack.txt holds MODELS*FOLDS copies of it.
check_outputs() {
    n=$(wc -l < o/stack.txt)
    [ "$n" -eq $((MODELS * FOLDS)) ] || die "$(pwd)/o/stack.txt has $n lines, want $((MODELS * FOLDS))"
    [ "$(sort -u o/stack.txt)" = "$(cat "$1")" ] || die "$(pwd)/o/stack.txt does not match $1"
}

stamp() { stat -c %Y.%y o/prep.txt o/stack.txt o/m1.txt; }

machine() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr); file system of bench/out: $(df -T "$OUT" | awk 'NR == 2 {print $2}')"
    for t in $TOOLS; do echo "- $(tool_version "$t")"; done
    if [ "$HYPERFINE" = 1 ]; then
        echo "- timing: $(hyperfine --version), median of $RUNS runs (noop: $NOOP_RUNS after 1 warm-up)"
    else
        echo "- timing: bench/run.sh's own loop (no hyperfine), median of $RUNS runs (noop: $NOOP_RUNS)"
    fi
    case " $TOOLS " in
    *" snakemake "*) echo "- snakemake: $SNAKEMAKE_RUNS run(s) per scenario (noop after 1 warm-up)" ;;
    esac
    echo "- load average before the runs: $(cut -d ' ' -f 1-3 /proc/loadavg)"
}

main() {
    for t in $TOOLS; do
        case $t in
        kpipe) [ -x "$KPIPE" ] || die "no kpipe binary at $KPIPE (run make first)" ;;
        *) command -v "$t" >/dev/null 2>&1 || die "$t is not installed (Debian: make, ninja-build, snakemake)" ;;
        esac
    done
    # a previous run's files are deleted at the end (see write_helpers)
    rm -rf "$OUT.prev"
    if [ -e "$OUT" ]; then mv "$OUT" "$OUT.prev"; fi
    mkdir -p "$OUT/bin"
    cc -std=c11 -O2 -Wall -Wextra -Werror "$ROOT/bench/exec/catfiles.c" -o "$OUT/bin/catfiles"
    "$PY" "$ROOT/bench/exec/gen.py" "$OUT" --models "$MODELS" --folds "$FOLDS" --catfiles ../bin/catfiles
    write_helpers
    machine > "$OUT/machine.md"
    for t in $TOOLS; do
        cmd=$(tool_cmd "$t")
        runs=$RUNS noop_runs=$NOOP_RUNS
        if [ "$t" = snakemake ]; then runs=$SNAKEMAKE_RUNS noop_runs=$SNAKEMAKE_RUNS; fi
        cd "$OUT/$t"
        cp input.txt input.orig
        echo "== $t: $cmd  (in $OUT/$t)"
        timeit "$t" "$CLEAN" "$runs" "$cmd" "$OUT/$t.cold.json"
        check_outputs input.orig
        before=$(stamp)
        timeit "$t" "" "$noop_runs" "$cmd" "$OUT/$t.noop.json"
        [ "$(stamp)" = "$before" ] || die "$t: the no-op re-run rewrote outputs"
        timeit "$t" "$TOUCH" "$runs" "$cmd" "$OUT/$t.touch.json"
        check_outputs input.txt
        cd "$ROOT"
    done
    rm -rf "$OUT/trash" "$OUT.prev"
    "$PY" "$ROOT/bench/exec/report.py" "$OUT" $TOOLS > "$OUT/results.md"
    cat "$OUT/results.md"
}

main "$@"
