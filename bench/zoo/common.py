"""common.py - what the zoo benchmark's scripts share: the data sets, the
rows (data set x model family x hyperparameters), the kpipe config text, a
safetensors reader (struct + json + numpy) and kpipe's metrics in numpy.

The rows are the one place to change what is benchmarked: each has the kpipe
model and params of its train stage and the anchor (bench/zoo/bench.py's
ANCHORS) built from the same values.
"""
import json
import os
import struct
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

FOLDS_K = 5
FOLDS_SEED = 42
THREADS = 2          # threads of each kpipe fit (kpipe run -j 1 on 2 cores) and of each anchor

# name -> task, metric, target column, and the preprocess options.
DATASETS = {
    "breast_cancer": dict(task="binary", metric="auc", target="diagnosis",
                          what="Wisconsin breast cancer, 569 x 30 (sklearn's breast_cancer.csv)"),
    "digits": dict(task="multiclass", metric="accuracy", target="digit",
                   what="handwritten digits 8x8, 1,797 x 64, 10 classes (sklearn's digits.csv.gz)"),
    "wine": dict(task="multiclass", metric="logloss", target="cultivar",
                 what="wine, 178 x 13, 3 classes (sklearn's wine_data.csv)"),
    "diabetes": dict(task="regression", metric="rmse", target="progression",
                     what="diabetes, 442 x 10, regression (sklearn's diabetes_data_raw.csv.gz)"),
    "titanic": dict(task="binary", metric="accuracy", target="Survived",
                    drop=["Name"], missing_indicator=True,
                    what="Titanic passengers, 891 train rows: Sex, Age, Pclass (data/titanic)"),
    "synth500k": dict(task="binary", metric="auc", target="y",
                      what="generated nonlinear binary, 500,000 x 50 (400,000 train, 100,000 test)"),
    "synth50k": dict(task="binary", metric="auc", target="y",
                     what="the first 50,000 train and 10,000 test rows of synth500k"),
}

REAL = ["breast_cancer", "digits", "wine", "diabetes", "titanic"]

# Fixed hyperparameters per family (kpipe names; the anchors translate).
GBDT_SMALL = {"n_estimators": 100, "max_depth": 4, "learning_rate": 0.1}
GBDT_BIG = {"n_estimators": 200, "max_depth": 8, "learning_rate": 0.1}
RF = {"kind": "random", "n_estimators": 100}
ET = {"kind": "extra", "n_estimators": 100}
# synth50k: 25 trees (scikit-learn's full-depth random forest takes ~8 s per
# 20 trees on 40,000 x 50 here), 40 epochs (at 20 the fit is mid-way through
# a drop of the loss and the AUC swings by 0.03 between seeds in both).
RF_SYNTH = dict(RF, n_estimators=25)
ET_SYNTH = dict(ET, n_estimators=25)
MLP_SYNTH_EPOCHS = 40
LOGISTIC = {"C": 1.0, "max_iter": 1000, "tol": 1e-6}
RIDGE = {"alpha": 1.0}
KNN = {"n_neighbors": 15, "weights": "uniform", "metric": "euclidean"}
NB = {"var_smoothing": 1e-9}


def mlp(epochs, hidden=64, lr=1e-3):
    """Adam, fixed epoch count: n_iter_no_change = max_iter, so neither side stops early."""
    return {"hidden_layer_sizes": [hidden], "solver": "adam", "learning_rate_init": lr,
            "alpha": 1e-4, "max_iter": epochs, "n_iter_no_change": epochs}


def rows_for(ds):
    """The rows of data set ds: (stage name, kpipe model, params)."""
    task = DATASETS[ds]["task"]
    out = []
    if ds == "synth500k":
        return [("gbdt", "gbdt", GBDT_BIG), ("logistic", "logistic", LOGISTIC),
                ("ridge", "ridge", RIDGE), ("naive_bayes", "naive_bayes", NB)]
    if ds == "synth50k":
        return [("forest_rf", "forest", dict(RF_SYNTH, max_features="sqrt")),
                ("forest_et", "forest", dict(ET_SYNTH, max_features="sqrt")),
                ("knn", "knn", KNN), ("mlp", "mlp", mlp(MLP_SYNTH_EPOCHS))]
    mf = "all" if task == "regression" else "sqrt"
    out.append(("gbdt", "gbdt", GBDT_SMALL))
    out.append(("forest_rf", "forest", dict(RF, max_features=mf)))
    out.append(("forest_et", "forest", dict(ET, max_features=mf)))
    if task != "regression":
        out.append(("logistic", "logistic", LOGISTIC))
    if task in ("binary", "regression"):
        out.append(("ridge", "ridge", RIDGE))
    out.append(("knn", "knn", KNN))
    if task != "regression":
        out.append(("naive_bayes", "naive_bayes", NB))
    out.append(("mlp", "mlp", mlp(300, lr=1e-2) if task == "regression" else mlp(100)))
    return out


# ---- kpipe configs ----

def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def yaml_map(d):
    return "{" + ", ".join("%s: %s" % (k, yaml_value(v)) for k, v in d.items()) + "}"


def competition_yaml(ds, data_rel):
    """The competition block of data set ds, its CSVs at data_rel (relative to the config)."""
    d = DATASETS[ds]
    return "\n".join([
        "competition:",
        "  name: %s" % ds,
        "  train: %s/train.csv" % data_rel,
        "  test: %s/test.csv" % data_rel,
        "  sample_submission: %s/sample_submission.csv" % data_rel,
        "  id: %s" % ("PassengerId" if ds == "titanic" else "id"),
        "  target: %s" % d["target"],
        "  task: %s" % d["task"],
        "  metric: %s" % d["metric"],
        "  folds: {k: %d, kind: %s, seed: %d}" % (
            FOLDS_K, "plain" if d["task"] == "regression" else "stratified", FOLDS_SEED),
        ""])


def prep_yaml(ds):
    d = DATASETS[ds]
    opts = {"standardize": True}
    if d.get("drop"):
        opts["drop"] = d["drop"]
    if d.get("missing_indicator"):
        opts["missing_indicator"] = True
    return ("  prep:\n    type: preprocess\n" +
            "".join("    %s: %s\n" % (k, yaml_value(v)) for k, v in opts.items()) +
            "  folds:\n    type: folds\n    needs: [prep]\n")


def train_yaml(name, model, params):
    return ("  %s:\n    type: train\n    needs: [prep, folds]\n    model: %s\n    params: %s\n"
            % (name, model, yaml_map(params)))


# ---- safetensors ----

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64,
          "U8": np.uint8, "I8": np.int8, "U32": np.uint32, "I16": np.int16}


def st_read(path, names=None):
    """Returns (tensors, metadata) of a safetensors file; names limits the tensors read."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        meta = head.pop("__metadata__", {})
        out = {}
        for k, v in head.items():
            if names is not None and k not in names:
                continue
            a, b = v["data_offsets"]
            f.seek(8 + n + a)
            buf = f.read(b - a)
            out[k] = np.frombuffer(buf, DTYPES[v["dtype"]]).reshape(v["shape"])
        return out, meta


# ---- kpipe's metrics (models/metric.h), in numpy ----

def score(metric, task, y, p, threshold=0.5):
    """kpipe's metric of predictions p (binary/regression: [n] or [n, 1]; multiclass [n, K])."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if metric == "rmse":
        return float(np.sqrt(np.mean((p - y) ** 2)))
    if metric == "accuracy":
        pred = np.argmax(p, axis=1) if task == "multiclass" else (p > threshold)
        return float(np.mean(pred == y))
    if metric == "logloss":
        if task == "multiclass":
            q = np.clip(p[np.arange(len(y)), y.astype(int)], 1e-15, 1 - 1e-15)
            return float(-np.mean(np.log(q)))
        q = np.clip(p, 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    if metric == "auc":
        from sklearn.metrics import roc_auc_score
        if task == "multiclass":
            return float(np.mean([roc_auc_score(y == k, p[:, k]) for k in range(p.shape[1])]))
        return float(roc_auc_score(y, p))
    raise ValueError("metric %s" % metric)


def higher_is_better(metric):
    return metric in ("auc", "accuracy")


def load_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def save_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


# ---- how much CPU other processes took while we measured ----

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds():
    """CPU seconds all processes have used since boot (/proc/stat: user nice system irq softirq)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / _TICK


def _descendants_cpu(root):
    """utime + stime of the live descendants of pid root (e.g. joblib's worker processes)."""
    kids, cpu = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        w = s[s.rindex(")") + 2:].split()
        kids.setdefault(int(w[1]), []).append(int(d))
        cpu[int(d)] = (int(w[11]) + int(w[12])) / _TICK
    total, todo = 0.0, list(kids.get(root, []))
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(kids.get(p, []))
    return total


class CpuWatch:
    """Measures the CPU other processes used between start and stop, in cores
    (their CPU seconds / wall seconds): this process and its children are
    subtracted from the machine's busy time."""

    def __init__(self):
        self.t = time.perf_counter()
        self.busy = _busy_seconds()
        self.own = self._own()

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system + \
            _descendants_cpu(os.getpid())

    def other_cores(self):
        wall = time.perf_counter() - self.t
        other = (_busy_seconds() - self.busy) - (self._own() - self.own)
        return max(0.0, other / wall) if wall > 0 else 0.0
