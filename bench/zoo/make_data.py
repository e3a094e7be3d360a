#!/usr/bin/python3
"""make_data.py - the zoo benchmark's data sets as Kaggle folders.

    /usr/bin/python3 bench/zoo/make_data.py OUT_DATA_DIR [NAME ...]

Writes OUT_DATA_DIR/NAME/{train,test,sample_submission,test_labels}.csv (the
layout of data/demo/, see scripts/make_demo_data.py) for breast_cancer,
digits, wine and diabetes (scikit-learn's bundled copies in
/usr/lib/python3/dist-packages/sklearn/datasets/data/, read by its loaders),
titanic (copied from the repository's data/titanic/), and synth500k and
synth50k (generated below).  Each real set is shuffled with a fixed seed and
its last 20% become test.csv.  A folder whose STAMP file matches this
script's version of it is left as it is (synth500k takes ~30 s to write).
"""
import csv
import os
import shutil
import sys

import numpy as np

sys.dont_write_bytecode = True        # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATASETS, ROOT  # noqa: E402

VERSION = "zoo-data 1"
SYNTH_ROWS, SYNTH_TEST, SYNTH_COLS, SYNTH_SEED = 500000, 100000, 50, 20261129
SUB_ROWS, SUB_TEST = 50000, 10000


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_kaggle(folder, ids, names, X, y, target, test_share=0.2, seed=2016, fmt=repr):
    """Shuffles (seeded), holds out the last test_share, writes the four CSVs."""
    order = np.random.RandomState(seed).permutation(len(ids))
    n_test = int(round(len(ids) * test_share))
    tr, te = order[:-n_test], order[-n_test:]
    cols = ["id"] + names
    write_csv(os.path.join(folder, "train.csv"), cols + [target],
              ([ids[i]] + [fmt(v) for v in X[i]] + [y[i]] for i in tr))
    write_csv(os.path.join(folder, "test.csv"), cols,
              ([ids[i]] + [fmt(v) for v in X[i]] for i in te))
    write_csv(os.path.join(folder, "test_labels.csv"), ["id", target], ([ids[i], y[i]] for i in te))
    fill = "0.5" if DATASETS[os.path.basename(folder)]["task"] == "binary" else y[te[0]]
    write_csv(os.path.join(folder, "sample_submission.csv"), ["id", target],
              ([ids[i], fill] for i in te))


def num(v):
    """A float as its shortest exact text; whole numbers without '.0'."""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def make_breast_cancer(folder):
    from sklearn.datasets import load_breast_cancer
    d = load_breast_cancer()
    names = [n.replace(" ", "_") for n in d.feature_names]
    y = [d.target_names[t] for t in d.target]          # malignant / benign
    write_kaggle(folder, [str(842000 + i) for i in range(len(y))], names, d.data, y,
                 "diagnosis", fmt=num)


def make_digits(folder):
    from sklearn.datasets import load_digits
    d = load_digits()
    names = ["px%d" % i for i in range(d.data.shape[1])]
    write_kaggle(folder, [str(i + 1) for i in range(len(d.target))], names, d.data,
                 [str(t) for t in d.target], "digit", fmt=num)


def make_wine(folder):
    from sklearn.datasets import load_wine
    d = load_wine()
    names = [n.replace("/", "_") for n in d.feature_names]
    write_kaggle(folder, [str(i + 1) for i in range(len(d.target))], names, d.data,
                 [d.target_names[t] for t in d.target], "cultivar", fmt=num)


def make_diabetes(folder):
    from sklearn.datasets import load_diabetes
    d = load_diabetes(scaled=False)
    write_kaggle(folder, [str(i + 1) for i in range(len(d.target))], list(d.feature_names),
                 d.data, [num(t) for t in d.target], "progression", fmt=num)


def make_titanic(folder):
    src = os.path.join(ROOT, "data", "titanic")
    for f in ("train.csv", "test.csv", "sample_submission.csv", "test_labels.csv"):
        shutil.copyfile(os.path.join(src, f), os.path.join(folder, f))


def synth(n, d, seed):
    """X ~ N(0, 1) float32 with 8 informative columns (of which 2 pairs
    correlated with others), y = 1 when a nonlinear score plus noise > 0."""
    rs = np.random.RandomState(seed)
    X = rs.standard_normal((n, d)).astype(np.float32)
    X[:, 10] = 0.7 * X[:, 0] + 0.3 * X[:, 10]          # correlated copies
    X[:, 11] = 0.5 * X[:, 1] - 0.5 * X[:, 11]
    X[:, 12] = np.round(X[:, 12] * 2) / 2              # a coarse column
    x = X.astype(np.float64)
    s = (1.5 * np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 - 0.5
         + 0.8 * (x[:, 4] > 0) - 0.6 * x[:, 5] + 0.3 * x[:, 6] * x[:, 7]
         + 0.4 * np.abs(x[:, 8]) * (x[:, 9] > 0.5) + rs.normal(0, 0.5, n))
    return X, (s > 0).astype(np.int64)


def write_synth_csv(path, ids, X, y=None):
    """Fast CSV: 6 significant digits, via pandas when present."""
    try:
        import pandas as pd
        df = pd.DataFrame(X, columns=["f%d" % j for j in range(X.shape[1])])
        df.insert(0, "id", ids)
        if y is not None:
            df["y"] = y
        df.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
    except ImportError:
        head = ["id"] + ["f%d" % j for j in range(X.shape[1])] + (["y"] if y is not None else [])
        with open(path, "w") as f:
            f.write(",".join(head) + "\n")
            for i in range(len(ids)):
                f.write(",".join([str(ids[i])] + ["%.6g" % v for v in X[i]] +
                                 ([str(y[i])] if y is not None else [])) + "\n")


def make_synth(folder, rows, test):
    X, y = synth(SYNTH_ROWS + SYNTH_TEST, SYNTH_COLS, SYNTH_SEED)
    tr = np.arange(rows)
    te = SYNTH_ROWS + np.arange(test)
    ids = np.arange(1, SYNTH_ROWS + SYNTH_TEST + 1)
    write_synth_csv(os.path.join(folder, "train.csv"), ids[tr], X[tr], y[tr])
    write_synth_csv(os.path.join(folder, "test.csv"), ids[te], X[te])
    write_csv(os.path.join(folder, "test_labels.csv"), ["id", "y"], zip(ids[te], y[te]))
    write_csv(os.path.join(folder, "sample_submission.csv"), ["id", "y"],
              ((i, "0.5") for i in ids[te]))


MAKERS = {
    "breast_cancer": make_breast_cancer,
    "digits": make_digits,
    "wine": make_wine,
    "diabetes": make_diabetes,
    "titanic": make_titanic,
    "synth500k": lambda f: make_synth(f, SYNTH_ROWS, SYNTH_TEST),
    "synth50k": lambda f: make_synth(f, SUB_ROWS, SUB_TEST),
}


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    out = argv[1]
    names = argv[2:] or list(MAKERS)
    for name in names:
        folder = os.path.join(out, name)
        stamp = os.path.join(folder, "STAMP")
        want = "%s %s\n" % (VERSION, name)
        if os.path.exists(stamp) and open(stamp).read() == want:
            print("make_data: %s up to date" % folder)
            continue
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(stamp):
            os.remove(stamp)
        MAKERS[name](folder)
        with open(stamp, "w") as f:
            f.write(want)
        print("make_data: wrote %s" % folder)


if __name__ == "__main__":
    main(sys.argv)
