#!/usr/bin/python3
"""mlp: kpipe against scikit-learn's MLPClassifier / MLPRegressor, fit time and score.

    /usr/bin/python3 bench/models/mlp_vs_sklearn.py [--quick] [--only NAME] [--epochs N]

Builds bench/models/mlp_time.c (the kpipe side: kp_model_fit then
kp_model_predict, timed inside the C program) with the Makefile's -O2, then
for every data set runs the same folds through kpipe and scikit-learn 1.2
with the same network and training: hidden_layer_sizes (100,), ReLU, adam,
learning_rate_init 1e-3, alpha 1e-4, batch_size min(200, n), max_iter
epochs (200; --epochs), shuffling every epoch, early stopping off, and
n_iter_no_change = max_iter + 1 on both sides so that both run every epoch
(the timing compares equal work; scikit-learn's default would stop some
sets early on the training loss, and so would kpipe's).

Both sides get the same float32 features, standardised with the training
fold's mean and std; regression targets are standardised the same way and
the predictions mapped back.  OpenBLAS runs with 2 threads in scikit-learn
(numpy's default here); kpipe gets THREADS=2 (its GEMMs run on one OpenBLAS
thread for bit-reproducibility, see models/mlp.c; with (100,) hidden units no
GEMM is large enough for kpipe to cut into chunks, so the fit uses one core).
Both sides load the same libopenblas (0.3.21, which does not know this
machine's CPU and runs its generic Prescott kernels: OPENBLAS_CORETYPE=SkylakeX
would make every sgemm several times faster, on both sides).

Data: scikit-learn's bundled sets (breast cancer, digits, wine, diabetes;
5 shuffled folds, seed 0) and generated problems of 50,000 x 50 (binary and
regression; one 80/20 split).  The fit time of a fold is the fastest of
several repeats (one on the big sets); the table sums the folds and gives
the ratio kpipe / scikit-learn, in wall time and in CPU time of the
process (all its threads; the machine may be shared).  Scores are accuracy (RMSE for regression):
the mean over folds with its fold standard deviation; "|d|/std" is the gap
between the means over the larger standard deviation (one split: over the
binomial standard error of the accuracy, or 1% of the RMSE).

Writes the table to stdout and to bench/out/models/mlp.md.
"""
import json
import os
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPClassifier, MLPRegressor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "bench", "out", "models")
BIN = os.path.join(OUT, "mlp_time")
THREADS = 2
SOURCES = ["bench/models/mlp_time.c", "models/mlp.c", "models/mlp_nn.c", "models/mlp_io.c",
           "models/model.c", "models/safetensors.c", "lib/err.c", "lib/params.c",
           "lib/parallel.c", "lib/buf.c", "lib/afile.c", "lib/rng.c"]
PKGS = "yaml-0.1 libpng libcurl openblas jansson libxxhash"
# model.c needs the registry only for kp_model_load/kp_model_find, which the timer never
# calls; a stub keeps the build independent of the other models' sources.
STUB = """#include "model.h"
int kp_model_count(void) { return 0; }
const kp_model_ops *kp_model_at(int i) { (void)i; return 0; }
const kp_model_ops *kp_model_find(const char *name) { (void)name; return 0; }
"""


def build():
    """Compiles the kpipe timing driver with the Makefile's flags."""
    os.makedirs(OUT, exist_ok=True)
    stub = os.path.join(OUT, "mlp_registry_stub.c")
    with open(stub, "w") as f:
        f.write(STUB)
    cflags = subprocess.check_output(["pkg-config", "--cflags"] + PKGS.split(), text=True).split()
    libs = subprocess.check_output(["pkg-config", "--libs"] + PKGS.split(), text=True).split()
    cmd = (["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2", "-g",
            "-DKP_VERSION=\"bench\"", "-Imodels"] + cflags + SOURCES + [stub, "-o", BIN] + libs
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


def kpipe_run(task, n_out, Xtr, ytr, Xte, epochs, repeats):
    """Returns (fastest fit seconds, least fit CPU seconds, predictions) of kpipe."""
    data = os.path.join(OUT, "mlp_split.safetensors")
    preds = os.path.join(OUT, "mlp_preds.f32")
    write_safetensors(data, {"X_train": Xtr, "y_train": ytr.reshape(len(ytr), -1),
                             "X_test": Xte})
    cmd = [BIN, task, str(n_out), data, str(THREADS), str(repeats), preds,
           "hidden_layer_sizes=100", "solver=adam", "max_iter=%d" % epochs,
           "n_iter_no_change=%d" % (epochs + 1), "early_stopping=false"]
    t = json.loads(subprocess.check_output(cmd, text=True))
    return (t["fit_seconds"], t["fit_cpu_seconds"],
            np.fromfile(preds, dtype="<f4").reshape(len(Xte), n_out))


def sklearn_run(task, Xtr, ytr, Xte, epochs, repeats):
    """Returns (fastest fit seconds, least fit CPU seconds, predictions) of scikit-learn."""
    cls = MLPRegressor if task == "regression" else MLPClassifier
    best = cpu = 1e30
    for _ in range(repeats):
        est = cls(hidden_layer_sizes=(100,), solver="adam", max_iter=epochs,
                  n_iter_no_change=epochs + 1, early_stopping=False, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0, c0 = time.perf_counter(), time.process_time()
            est.fit(Xtr, ytr)
            best = min(best, time.perf_counter() - t0)
            cpu = min(cpu, time.process_time() - c0)
    p = est.predict(Xte) if task == "regression" else est.predict_proba(Xte)
    p = p.reshape(len(Xte), -1)
    return best, cpu, p[:, 1:] if task == "binary" else p


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
    n, d = (10000, 50) if quick else (50000, 50)
    tr, te = np.arange(n * 4 // 5), np.arange(n * 4 // 5, n)
    X, y = datasets.make_classification(n_samples=n, n_features=d, n_informative=15,
                                        n_redundant=10, flip_y=0.05, random_state=0)
    sets.append(("gen binary %dx%d" % (n, d), X.astype(np.float32), y, "binary", 1, [(tr, te)]))
    X, y = datasets.make_friedman1(n_samples=n, n_features=d, noise=1.0, random_state=0)
    sets.append(("gen friedman1 %dx%d" % (n, d), X.astype(np.float32), y, "regression", 1,
                 [(tr, te)]))
    return sets


def standardise(Xtr, Xte):
    """Scales both by the training rows' mean and std (a constant column stays 0)."""
    mu, sd = Xtr.mean(0), Xtr.std(0)
    sd[sd == 0] = 1
    return ((Xtr - mu) / sd).astype(np.float32), ((Xte - mu) / sd).astype(np.float32)


def compare(name, X, y, task, n_out, folds, epochs):
    """Runs one data set on both sides; returns a table row."""
    big = len(X) > 10000
    tk = ts = ck = cs = 0.0
    sk, kp = [], []
    for tr, te in folds:
        Xtr, Xte = standardise(X[tr], X[te])
        ytr, ym, ys = y[tr], 0.0, 1.0
        if task == "regression":
            ym, ys = float(ytr.mean()), float(ytr.std())
            ytr = ((ytr - ym) / ys).astype(np.float32)
        t, c, pk = kpipe_run(task, n_out, Xtr, ytr.astype(np.float32), Xte, epochs,
                             1 if big else 3)
        s, d, ps = sklearn_run(task, Xtr, ytr, Xte, epochs, 1 if big else 2)
        tk, ck = tk + t, ck + c
        ts, cs = ts + s, cs + d
        kp.append(score(task, y[te], pk * ys + ym if task == "regression" else pk))
        sk.append(score(task, y[te], ps * ys + ym if task == "regression" else ps))
    if len(folds) > 1:
        spread = max(np.std(kp), np.std(sk))
    else:
        a = np.mean(sk)
        spread = np.sqrt(a * (1 - a) / len(folds[0][1])) if task != "regression" else 0.01 * a
    gap = abs(np.mean(kp) - np.mean(sk)) / spread if spread > 0 else 0.0
    metric = "rmse" if task == "regression" else "accuracy"
    return (name, task, metric, np.mean(kp), np.std(kp), np.mean(sk), np.std(sk), gap, tk, ts,
            ck, cs)


def main():
    quick = "--quick" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 200
    build()
    rows = []
    for name, X, y, task, n_out, folds in load_sets(quick):
        if only and only not in name:
            continue
        r = compare(name, X, y, task, n_out, folds, epochs)
        rows.append(r)
        print("%-24s %s %.4f+-%.4f vs %.4f+-%.4f |d|/std %.2f  kpipe %.3fs sklearn %.3fs "
              "ratio %.3f (cpu %.3f)" % ((r[0], r[2]) + tuple(r[3:8]) +
                                         (r[8], r[9], r[8] / r[9], r[10] / r[11])), flush=True)
    table = ["| data | task | metric | kpipe | scikit-learn | \\|d\\|/std "
             "| kpipe fit s | scikit-learn fit s | ratio | CPU s kpipe / scikit-learn "
             "| CPU ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, task, metric, a, sa, b, sb, gap, tk, ts, ck, cs in rows:
        table.append("| %s | %s | %s | %.4f ± %.4f | %.4f ± %.4f | %.2f | %.3f | %.3f | %.3f "
                     "| %.2f / %.2f | %.3f |"
                     % (name, task, metric, a, sa, b, sb, gap, tk, ts, tk / ts, ck, cs, ck / cs))
    text = ("mlp: hidden (100,), relu, adam, batch min(200, n), %d epochs, 2 threads\n\n" % epochs
            + "\n".join(table) + "\n")
    with open(os.path.join(OUT, "mlp.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
