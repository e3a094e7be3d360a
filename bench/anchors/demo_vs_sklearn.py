#!/usr/bin/python3
"""Checks kpipe's demo run against scikit-learn on the same data and folds.

Reads kpipe's own artifacts (dataset, folds, preds) with numpy only, refits
each logistic/ridge stage with scikit-learn on the same folds, and prints
kpipe's and scikit-learn's CV scores side by side, plus the held-out test
AUC of the submission against data/demo/test_labels.csv.
usage: bench/anchors/demo_vs_sklearn.py [RUN_DIR]   (after `make demo`)"""
import csv, glob, json, os, struct, sys
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score

run = sys.argv[1] if len(sys.argv) > 1 else "configs/runs/demo"

def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
    meta = hdr.pop("__metadata__", {})
    out = {}
    for name, t in hdr.items():
        b, e = t["data_offsets"]
        dt = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}[t["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(t["shape"])
    return out, meta

ds, _ = load(f"{run}/prep/dataset.safetensors")
folds, fmeta = load(f"{run}/folds/folds.safetensors")
X, y, fold = ds["X_train"].astype(np.float64), ds["y"], folds["fold"][0]
k = int(fmeta["k"])
print(f"{'stage':16} {'kpipe cv auc':>22} {'sklearn cv auc':>22}  max |oof diff|")
for path in sorted(glob.glob(f"{run}/*/preds.safetensors") + glob.glob(f"{run}/*/*/preds.safetensors")):
    stage = os.path.relpath(os.path.dirname(path), run)
    preds, meta = load(path)
    model = meta.get("model")
    if model not in ("logistic", "ridge") or stage.startswith(("stack", "blend")):
        continue
    param = dict(kv.split("=") for kv in stage.split("/")[1].split(",")) if "/" in stage else {}
    scores, oof = [], np.zeros(len(y))
    for f in range(k):
        tr, va = fold != f, fold == f
        if model == "logistic":
            m = LogisticRegression(C=float(param.get("C", 1.0)), tol=1e-10, max_iter=10000)
            p = m.fit(X[tr], y[tr]).predict_proba(X[va])[:, 1]
        else:
            m = Ridge(alpha=10.0)   # configs/demo.yaml's ridge
            p = np.clip(m.fit(X[tr], y[tr]).predict(X[va]), 0, 1)
        oof[va] = p
        scores.append(roc_auc_score(y[va], p))
    diff = np.abs(oof - preds["oof"][:, 0]).max()
    print(f"{stage:16} {float(meta['cv_mean']):.6f} +- {float(meta['cv_std']):.6f}"
          f" {np.mean(scores):.6f} +- {np.std(scores):.6f}  {diff:.2e}")

labels = {r["id"]: 1 if r["diagnosis"] == "M" else 0 for r in csv.DictReader(open("data/demo/test_labels.csv"))}
sub = list(csv.DictReader(open("submissions/demo.csv")))
print("held-out test AUC of submissions/demo.csv: %.6f"
      % roc_auc_score([labels[r["id"]] for r in sub], [float(r["diagnosis"]) for r in sub]))
