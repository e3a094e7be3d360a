#!/usr/bin/python3
"""Builds data/wine/ (multiclass, per-class probability columns as in Otto)
and data/diabetes/ (regression) in Kaggle's layout from the copies of the UCI
Wine and the Efron et al. diabetes data sets that Debian's python3-sklearn
ships.  Run once; the output is committed."""
import csv, os, random
from sklearn.datasets import load_wine, load_diabetes

def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)

def split(rows, n_test, seed):
    rng = random.Random(seed)
    rng.shuffle(rows)
    return rows[n_test:], rows[:n_test]

os.makedirs("data/wine", exist_ok=True)
d = load_wine()
names = [n.replace("/", "_") for n in d.feature_names]
classes = ["class_%d" % c for c in range(3)]
rows = [[str(i + 1)] + [repr(float(v)) for v in x] + [classes[t]]
        for i, (x, t) in enumerate(zip(d.data, d.target))]
train, test = split(rows, 45, 7)
write("data/wine/train.csv", ["id"] + names + ["cultivar"], train)
write("data/wine/test.csv", ["id"] + names, [r[:-1] for r in test])
write("data/wine/test_labels.csv", ["id", "cultivar"], [[r[0], r[-1]] for r in test])
write("data/wine/sample_submission.csv", ["id"] + classes,
      [[r[0]] + ["0.333333"] * 3 for r in test])

os.makedirs("data/diabetes", exist_ok=True)
d = load_diabetes(scaled=False)
names = list(d.feature_names)
rows = [[str(1000 + i)] + [repr(float(v)) for v in x] + [repr(float(t))]
        for i, (x, t) in enumerate(zip(d.data, d.target))]
train, test = split(rows, 100, 11)
write("data/diabetes/train.csv", ["patient"] + names + ["progression"], train)
write("data/diabetes/test.csv", ["patient"] + names, [r[:-1] for r in test])
write("data/diabetes/test_labels.csv", ["patient", "progression"], [[r[0], r[-1]] for r in test])
write("data/diabetes/sample_submission.csv", ["patient", "progression"],
      [[r[0], "150.0"] for r in test])
