#!/usr/bin/python3
"""Builds data/demo/ (Kaggle layout) from scikit-learn's bundled copy of the
Wisconsin Diagnostic Breast Cancer data (UCI, CC BY 4.0; shipped by Debian's
python3-sklearn).  Run once; the output is committed."""
import csv, random
from sklearn.datasets import load_breast_cancer

d = load_breast_cancer()
names = [n.replace(" ", "_") for n in d.feature_names]
rows = []
for i, (x, t) in enumerate(zip(d.data, d.target)):
    # sklearn: 0 = malignant, 1 = benign; Kaggle's copy uses M / B.
    rows.append([str(842000 + i)] + [repr(float(v)) for v in x] + ["M" if t == 0 else "B"])
rng = random.Random(2016)
rng.shuffle(rows)
test, train = rows[:114], rows[114:]
with open("data/demo/train.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["id"] + names + ["diagnosis"])
    w.writerows(train)
with open("data/demo/test.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["id"] + names)
    w.writerows(r[:-1] for r in test)
with open("data/demo/test_labels.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["id", "diagnosis"])
    w.writerows([r[0], r[-1]] for r in test)
with open("data/demo/sample_submission.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["id", "diagnosis"])
    w.writerows([r[0], "0.5"] for r in test)
