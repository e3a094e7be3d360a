#!/usr/bin/python3
"""gbdt_vs_xgboost.py - kpipe's gbdt against XGBoost 1.7 `hist` on one problem.

    /usr/bin/python3 bench/models/gbdt_vs_xgboost.py [--rows 500000] [--cols 50]
        [--test 100000] [--trees 200] [--depth 8] [--eta 0.1] [--threads 2]
        [--repeats 1] [--fit-model /tmp/fit_model] [--out bench/out/models/gbdt]

Builds bench/models/fit_model.c (unless --fit-model names a built one), has
it dump the generated binary problem (fixed seed) as raw float32 files, then
fits XGBClassifier(tree_method='hist', max_bin=256, n_jobs=THREADS) and
kpipe's gbdt (max_bin=255, the most a uint8 code allows with NaN) with the
same trees, depth and learning rate, on the same rows, and prints one table
row each: fit seconds (best of --repeats), held-out AUC and logloss, and the
time ratio kpipe / XGBoost (wall, and CPU seconds of the process, which a
busy machine disturbs less).  The two run one after the other, never at once.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKGS = "yaml-0.1 libpng libcurl openblas jansson libxxhash"


def build(path):
    """Builds fit_model.c from the sources with the Makefile's -O2."""
    def pc(flag):
        return subprocess.run(["pkg-config", flag] + PKGS.split(), check=True,
                              capture_output=True, text=True).stdout.split()
    sources = sorted(glob.glob(os.path.join(ROOT, "lib/*.c")) +
                     glob.glob(os.path.join(ROOT, "models/*.c")) +
                     glob.glob(os.path.join(ROOT, "models/metrics/*.c")))
    cmd = (["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-g"] + pc("--cflags") +
           [os.path.join(ROOT, "bench/models/fit_model.c")] + sources + pc("--libs") +
           ["-lcsv", "-lm", "-lpthread", "-o", path])
    subprocess.run(cmd, cwd=ROOT, check=True)


def auc(p, y):
    order = np.argsort(p, kind="mergesort")
    ps, ys = p[order], y[order]
    ranks = np.empty(len(p))
    i = 0
    while i < len(p):
        j = i
        while j < len(p) and ps[j] == ps[i]:
            j += 1
        ranks[i:j] = (i + j + 1) / 2
        i = j
    pos = ys.sum()
    return (ranks[ys > 0.5].sum() - pos * (pos + 1) / 2) / (pos * (len(p) - pos))


def logloss(p, y):
    p = np.clip(p.astype(np.float64), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def run_xgboost(a, data):
    import xgboost as xgb
    Xtr, ytr, Xte, yte = data
    best = None
    for _ in range(a.repeats):
        m = xgb.XGBClassifier(tree_method="hist", n_estimators=a.trees, max_depth=a.depth,
                              learning_rate=a.eta, max_bin=256, n_jobs=a.threads,
                              random_state=0)
        t0, c0 = time.perf_counter(), time.process_time()
        m.fit(Xtr, ytr)
        t, c = time.perf_counter() - t0, time.process_time() - c0
        best = (t, c) if best is None or t < best[0] else best
    p = m.predict_proba(Xte)[:, 1]
    return best, auc(p, yte), logloss(p, yte), xgb.__version__


def run_kpipe(a, exe):
    best, line = None, ""
    for _ in range(a.repeats):
        cmd = [exe, "gbdt", "n_estimators=%d" % a.trees, "max_depth=%d" % a.depth,
               "learning_rate=%g" % a.eta, "max_bin=255", "--rows", str(a.rows),
               "--cols", str(a.cols), "--test", str(a.test), "--threads", str(a.threads)]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        t = float(re.search(r"fit ([0-9.]+) s", line).group(1))
        c = float(re.search(r"cpu ([0-9.]+) s", line).group(1))
        best = (t, c) if best is None or t < best[0] else best
    auc_k = float(re.search(r"test-auc ([0-9.]+)", line).group(1))
    ll_k = float(re.search(r"test-logloss ([0-9.]+)", line).group(1))
    return best, auc_k, ll_k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500000)
    ap.add_argument("--cols", type=int, default=50)
    ap.add_argument("--test", type=int, default=100000)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--eta", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fit-model", default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/out/models/gbdt"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    exe = a.fit_model or os.path.join(a.out, "fit_model")
    if not a.fit_model:
        build(exe)
    subprocess.run([exe, "gbdt", "--rows", str(a.rows), "--cols", str(a.cols), "--test",
                    str(a.test), "--dump", a.out], check=True, capture_output=True)
    rd = lambda name, shape: np.fromfile(os.path.join(a.out, name), np.float32).reshape(shape)
    data = (rd("X_train.f32", (a.rows, a.cols)), rd("y_train.f32", (a.rows,)),
            rd("X_test.f32", (a.test, a.cols)), rd("y_test.f32", (a.test,)))
    tx, auc_x, ll_x, ver = run_xgboost(a, data)
    tk, auc_k, ll_k = run_kpipe(a, exe)
    print("%d x %d binary, %d test rows, %d trees, depth %d, eta %g, %d threads"
          % (a.rows, a.cols, a.test, a.trees, a.depth, a.eta, a.threads))
    print("| model | fit s (wall) | fit s (CPU) | test AUC | test logloss |")
    print("|---|---|---|---|---|")
    print("| XGBoost %s hist (max_bin 256) | %.2f | %.2f | %.5f | %.5f |"
          % (ver, tx[0], tx[1], auc_x, ll_x))
    print("| kpipe gbdt (max_bin 255) | %.2f | %.2f | %.5f | %.5f |"
          % (tk[0], tk[1], auc_k, ll_k))
    print("fit time ratio kpipe / XGBoost: %.3f wall, %.3f CPU"
          % (tk[0] / tx[0], tk[1] / tx[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
