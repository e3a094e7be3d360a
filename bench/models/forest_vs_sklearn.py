#!/usr/bin/python3
"""forest: kpipe against scikit-learn's RandomForest / ExtraTrees, fit time and score.

    /usr/bin/python3 bench/models/forest_vs_sklearn.py [--quick] [--only NAME] [--kind KIND]

Builds bench/models/forest_time.c (the kpipe side: kp_model_fit then
kp_model_predict, timed inside the C program) with the Makefile's -O2, then
for every data set runs the same folds through kpipe and scikit-learn 1.2,
2 threads each (n_jobs=2), the same hyperparameters (n_estimators=100, the
defaults otherwise: max_features sqrt for classification and all for
regression, unlimited depth, min_samples_leaf 1, bootstrap for random
forests only):

  random  RandomForestClassifier / RandomForestRegressor   kind=random
  extra   ExtraTreesClassifier / ExtraTreesRegressor       kind=extra

Data: scikit-learn's bundled sets (breast cancer, digits, wine, diabetes;
5 shuffled folds, seed 0) and generated problems of 100,000 x 50 (binary
and regression; one 80/20 split).  The fit time of a fold is the fastest
of 3 repeats on the small sets and of 1 on the generated ones, the same
for both sides; the table sums the folds and gives the ratio
kpipe / scikit-learn (wall clock: run it on an otherwise idle machine).
The scores are accuracy (RMSE for regression), the mean over folds with
its fold standard deviation; "|d|/std" is the gap between the two means
over the larger of the two standard deviations (one split: over the
binomial standard error of the accuracy, or 1% of the RMSE).  kpipe works
in float32, scikit-learn in float32 too (its trees convert X).

Writes the table to stdout and to bench/out/models/forest.md.
"""
import argparse
import json
import os
import struct
import subprocess
import time

import numpy as np
from sklearn import datasets
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.model_selection import KFold

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "bench", "out", "models")
BIN = os.path.join(OUT, "forest_time")
THREADS = 2
TREES = 100
SOURCES = ["bench/models/forest_time.c", "models/forest.c", "models/forest_tree.c",
           "models/forest_cut.c", "models/binning.c", "models/model.c", "models/safetensors.c",
           "lib/err.c", "lib/params.c", "lib/parallel.c", "lib/buf.c", "lib/afile.c", "lib/rng.c"]
# The driver names the forest's ops itself: a registry of no models keeps the
# build independent of the other models in models/registry.c.
STUB = """#include "models/model.h"
int kp_model_count(void) { return 0; }
const kp_model_ops *kp_model_at(int i) { (void)i; return 0; }
const kp_model_ops *kp_model_find(const char *name) { (void)name; return 0; }
"""
PKGS = "yaml-0.1 libpng libcurl openblas jansson libxxhash"


def build():
    """Compiles the kpipe timing driver with the Makefile's flags."""
    os.makedirs(OUT, exist_ok=True)
    stub = os.path.join(OUT, "forest_registry_stub.c")
    with open(stub, "w") as f:
        f.write(STUB)
    cflags = subprocess.check_output(["pkg-config", "--cflags"] + PKGS.split(), text=True).split()
    libs = subprocess.check_output(["pkg-config", "--libs"] + PKGS.split(), text=True).split()
    cmd = (["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2", "-g",
            "-DKP_VERSION=\"bench\"", "-I."] + cflags + SOURCES + [stub, "-o", BIN] + libs +
           ["-lm", "-lpthread"])
    subprocess.check_call(cmd, cwd=ROOT)


def write_safetensors(path, tensors):
    """Writes F32 tensors {name: array} as a safetensors file."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def kpipe_run(kind, task, n_out, Xtr, ytr, Xte, repeats):
    """Returns (fastest fit seconds, predictions) of kpipe."""
    data = os.path.join(OUT, "forest_split.safetensors")
    preds = os.path.join(OUT, "forest_preds.f32")
    write_safetensors(data, {"X_train": Xtr, "y_train": ytr.reshape(len(ytr), -1),
                             "X_test": Xte})
    cmd = [BIN, task, str(n_out), data, str(THREADS), str(repeats), preds,
           "kind=" + kind, "n_estimators=%d" % TREES]
    t = json.loads(subprocess.check_output(cmd, text=True))
    return t["fit_seconds"], np.fromfile(preds, dtype="<f4").reshape(len(Xte), n_out)


def sklearn_run(kind, task, Xtr, ytr, Xte, repeats):
    """Returns (fastest fit seconds, predictions) of scikit-learn."""
    cls = {("random", False): RandomForestClassifier, ("extra", False): ExtraTreesClassifier,
           ("random", True): RandomForestRegressor, ("extra", True): ExtraTreesRegressor}
    best, p = 1e30, None
    for _ in range(repeats):
        est = cls[kind, task == "regression"](n_estimators=TREES, n_jobs=THREADS, random_state=0)
        t0 = time.perf_counter()
        est.fit(Xtr, ytr)
        best = min(best, time.perf_counter() - t0)
    p = est.predict(Xte) if task == "regression" else est.predict_proba(Xte)
    p = p.reshape(len(Xte), -1)
    return best, p[:, 1:] if task == "binary" else p


def score(task, y, p):
    """accuracy for classification, RMSE for regression."""
    if task == "regression":
        return float(np.sqrt(np.mean((p[:, 0] - y) ** 2)))
    guess = (p[:, 0] > 0.5).astype(int) if task == "binary" else p.argmax(1)
    return float(np.mean(guess == y))


def load_sets(quick):
    """Returns [(name, X, y, task, n_out, folds)]; folds is a list of (train, test) index arrays."""
    sets = []
    for name, loader, task in [("breast_cancer", datasets.load_breast_cancer, "binary"),
                               ("digits", datasets.load_digits, "multiclass"),
                               ("wine", datasets.load_wine, "multiclass"),
                               ("diabetes", datasets.load_diabetes, "regression")]:
        X, y = loader(return_X_y=True)
        n_out = int(y.max()) + 1 if task == "multiclass" else 1
        folds = list(KFold(5, shuffle=True, random_state=0).split(X))
        sets.append((name, X.astype(np.float32), y, task, n_out, folds))
    n, d = (20000, 50) if quick else (100000, 50)
    tr, te = np.arange(n * 4 // 5), np.arange(n * 4 // 5, n)
    X, y = datasets.make_classification(n_samples=n, n_features=d, n_informative=15,
                                        n_redundant=10, flip_y=0.05, random_state=0)
    sets.append(("gen binary %dx%d" % (n, d), X.astype(np.float32), y, "binary", 1, [(tr, te)]))
    X, y = datasets.make_friedman1(n_samples=n, n_features=d, noise=1.0, random_state=0)
    sets.append(("gen friedman1 %dx%d" % (n, d), X.astype(np.float32), y, "regression", 1,
                 [(tr, te)]))
    return sets


def compare(name, X, y, task, n_out, folds, kind):
    """Runs one data set and kind on both sides; returns a table row."""
    big = len(X) > 10000
    tk = ts = 0.0
    sk, kp = [], []
    for tr, te in folds:
        t, pk = kpipe_run(kind, task, n_out, X[tr], y[tr].astype(np.float32), X[te],
                          1 if big else 3)
        s, ps = sklearn_run(kind, task, X[tr], y[tr], X[te], 1 if big else 3)
        tk += t
        ts += s
        kp.append(score(task, y[te], pk))
        sk.append(score(task, y[te], ps))
    if len(folds) > 1:
        spread = max(np.std(kp), np.std(sk))
    else:
        a = np.mean(sk)
        spread = np.sqrt(a * (1 - a) / len(folds[0][1])) if task != "regression" else 0.01 * a
    gap = abs(np.mean(kp) - np.mean(sk)) / spread if spread > 0 else 0.0
    metric = "rmse" if task == "regression" else "accuracy"
    return (name, kind, task, metric, np.mean(kp), np.std(kp), np.mean(sk), np.std(sk), gap,
            tk, ts)


def row_text(r):
    """One progress line for a table row."""
    name, kind, task, metric, a, sa, b, sb, gap, tk, ts = r
    return ("%-24s %-6s %s %.4f+-%.4f vs %.4f+-%.4f |d|/std %.2f  kpipe %.3fs sklearn %.3fs "
            "ratio %.3f" % (name, kind, metric, a, sa, b, sb, gap, tk, ts, tk / ts))


def main():
    ap = argparse.ArgumentParser(description="forest: kpipe against scikit-learn")
    ap.add_argument("--quick", action="store_true", help="20,000-row generated sets")
    ap.add_argument("--only", help="only the data sets whose name contains this")
    ap.add_argument("--kind", choices=["random", "extra"], help="only this kind")
    args = ap.parse_args()
    kinds = [args.kind] if args.kind else ["random", "extra"]
    build()
    rows = []
    for name, X, y, task, n_out, folds in load_sets(args.quick):
        if args.only and args.only not in name:
            continue
        for kind in kinds:
            rows.append(compare(name, X, y, task, n_out, folds, kind))
            print(row_text(rows[-1]), flush=True)
    table = ["| data | kind | task | metric | kpipe | scikit-learn | \\|d\\|/std "
             "| kpipe fit s | scikit-learn fit s | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, kind, task, metric, a, sa, b, sb, gap, tk, ts in rows:
        table.append("| %s | %s | %s | %s | %.4f ± %.4f | %.4f ± %.4f | %.2f | %.3f | %.3f "
                     "| %.3f |" % (name, kind, task, metric, a, sa, b, sb, gap, tk, ts, tk / ts))
    text = "\n".join(table) + "\n"
    with open(os.path.join(OUT, "forest.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
