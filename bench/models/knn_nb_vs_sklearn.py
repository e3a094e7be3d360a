#!/usr/bin/python3
"""knn and naive_bayes: kpipe against scikit-learn, fit + predict time and score.

    /usr/bin/python3 bench/models/knn_nb_vs_sklearn.py [--quick]

Builds bench/models/knn_time.c (the kpipe side: kp_model_fit then
kp_model_predict, timed inside the C program) with the Makefile's -O2, then
for every data set and model runs the same 5 folds (KFold, shuffled, seed 0)
through kpipe and scikit-learn with 2 threads each:

  knn         KNeighborsClassifier / KNeighborsRegressor(n_neighbors=5,
              algorithm='brute', n_jobs=2); its "fit" is mostly prediction,
              so fit + predict is what is timed.
  naive_bayes GaussianNB() (classification sets only).

Data: scikit-learn's bundled sets (breast cancer, digits, wine, diabetes) and
a generated binary problem of 60,000 x 50 (50,000 train rows, 10,000
queries, one split).  Each fold's time is the fastest of several repeats;
the table sums the folds.  kpipe works in float32, scikit-learn in float64
(its default for these sets).  "max |dp|" is the largest difference between
the two sides' predictions (probabilities, or regression values).

Writes the table to stdout and to bench/out/models/knn_nb.md.
"""
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
from sklearn import datasets
from sklearn.model_selection import KFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "bench", "out", "models")
BIN = os.path.join(OUT, "knn_time")
THREADS = 2
SOURCES = ["bench/models/knn_time.c", "models/knn.c", "models/naive_bayes.c", "models/model.c",
           "models/registry.c", "models/logistic.c", "models/ridge.c", "models/linear.c",
           "models/lbfgs.c", "models/safetensors.c", "lib/err.c", "lib/params.c",
           "lib/parallel.c", "lib/buf.c", "lib/afile.c"]
PKGS = "yaml-0.1 libpng libcurl openblas jansson libxxhash"


def build():
    """Compiles the kpipe timing driver with the Makefile's flags."""
    os.makedirs(OUT, exist_ok=True)
    cflags = subprocess.check_output(["pkg-config", "--cflags"] + PKGS.split(), text=True).split()
    libs = subprocess.check_output(["pkg-config", "--libs"] + PKGS.split(), text=True).split()
    cmd = (["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2", "-g",
            "-DKP_VERSION=\"bench\""] + cflags + SOURCES + ["-o", BIN] + libs
           + ["-lm", "-lpthread"])
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


def kpipe_run(model, task, n_out, Xtr, ytr, Xte, repeats, params=()):
    """Returns (wall seconds of the fastest fit + predict, least CPU seconds, predictions)."""
    data = os.path.join(OUT, "split.safetensors")
    preds = os.path.join(OUT, "preds.f32")
    y = ytr.reshape(len(ytr), -1)
    write_safetensors(data, {"X_train": Xtr, "y_train": y, "X_test": Xte})
    cmd = [BIN, model, task, str(n_out), data, str(THREADS), str(repeats), preds] + list(params)
    t = json.loads(subprocess.check_output(cmd, text=True))
    p = np.fromfile(preds, dtype="<f4").reshape(len(Xte), n_out)
    return t["total"], t["cpu"], p


def sklearn_run(model, task, Xtr, ytr, Xte, repeats):
    """Returns (wall seconds of the fastest fit + predict, least CPU seconds, predictions)."""
    best, cpu, p = 1e30, 1e30, None
    for _ in range(repeats):
        if model == "naive_bayes":
            est = GaussianNB()
        elif task == "regression":
            est = KNeighborsRegressor(n_neighbors=5, algorithm="brute", n_jobs=THREADS)
        else:
            est = KNeighborsClassifier(n_neighbors=5, algorithm="brute", n_jobs=THREADS)
        c0, t0 = time.process_time(), time.perf_counter()
        est.fit(Xtr, ytr)
        p = est.predict(Xte) if task == "regression" else est.predict_proba(Xte)
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    p = p.reshape(len(Xte), -1)
    if task == "binary":
        p = p[:, 1:]
    return best, cpu, p


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
        sets.append((name, X, y, task, n_out, folds))
    n, m, d = (10000, 2000, 50) if quick else (50000, 10000, 50)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n + m, d))
    w = rng.standard_normal(d)
    y = (X @ w + 2 * rng.standard_normal(n + m) > 0).astype(int)
    sets.append(("gen %dx%d" % (n, d), X, y, "binary", 1,
                 [(np.arange(n), np.arange(n, n + m))]))
    return sets


def main():
    quick = "--quick" in sys.argv
    build()
    rows = []
    for name, X, y, task, n_out, folds in load_sets(quick):
        big = len(X) > 10000
        for model in ["knn", "naive_bayes"]:
            if model == "naive_bayes" and task == "regression":
                continue
            tk = ts = ck = cs = 0.0
            sk_s = kp_s = dp = 0.0
            for tr, te in folds:
                Xtr, Xte = X[tr], X[te]
                Xtr32, Xte32 = Xtr.astype(np.float32), Xte.astype(np.float32)
                t, c, pk = kpipe_run(model, task, n_out, Xtr32, y[tr].astype(np.float32), Xte32,
                                     2 if big else 20)
                s, cc, ps = sklearn_run(model, task, Xtr, y[tr], Xte, 2 if big else 5)
                tk, ck = tk + t, ck + c
                ts, cs = ts + s, cs + cc
                kp_s += score(task, y[te], pk) / len(folds)
                sk_s += score(task, y[te], ps) / len(folds)
                dp = max(dp, float(np.abs(pk - ps).max()))
            metric = "rmse" if task == "regression" else "accuracy"
            rows.append((name, model, task, metric, kp_s, sk_s, dp, tk, ts, ck, cs))
            print("%-16s %-12s %s %.4f vs %.4f  max|dp| %.2g  kpipe %.4fs sklearn %.4fs ratio %.3f"
                  "  (CPU %.4fs vs %.4fs)" % (name, model, metric, kp_s, sk_s, dp, tk, ts, tk / ts,
                                              ck, cs), flush=True)
    table = ["| data | model | task | metric | kpipe | scikit-learn | max \\|dp\\| "
             "| kpipe fit+predict s | scikit-learn s | ratio | CPU s kpipe / scikit-learn |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, model, task, metric, a, b, dp, tk, ts, ck, cs in rows:
        table.append("| %s | %s | %s | %s | %.4f | %.4f | %.1e | %.4f | %.4f | %.3f | %.4f / %.4f |"
                     % (name, model, task, metric, a, b, dp, tk, ts, tk / ts, ck, cs))
    text = "\n".join(table) + "\n"
    with open(os.path.join(OUT, "knn_nb.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
