#!/usr/bin/python3
"""torch_cnn.py - the issue-4 benchmark CNN in PyTorch, on the Fashion-MNIST Kaggle folder.

    /usr/bin/python3 bench/cnn/torch_cnn.py --data DIR [--epochs 5] [--tta hflip]
        [--threads 2] [--batch 128] [--lr 1e-3] [--seed 0] [--train-limit N]
        [--test-limit N] [--malloc default|keep] [--conv-bias] [--json FILE]
    /usr/bin/python3 bench/cnn/torch_cnn.py --idx /usr/share/datasets/fashion-mnist ...

The network (the same as kpipe's in bench/cnn/fmnist_bench.yaml):
    conv3x3(1->32, pad 1)-BN-ReLU, conv3x3(32->32)-BN-ReLU, maxpool 2,
    conv3x3(32->64)-BN-ReLU, conv3x3(64->64)-BN-ReLU, maxpool 2,
    flatten (64 x 7 x 7), dense 128 + ReLU, dropout 0.3, dense 10;
convolutions without bias (a batch norm follows each; --conv-bias adds
them), PyTorch's default initialisation, Adam (lr 1e-3, betas 0.9/0.999,
eps 1e-8, no weight decay), softmax cross-entropy, batch 128 with the last
partial batch kept, a fresh seeded shuffle every epoch, no augmentation.
About 112 MFLOP per training image (37 forward, twice that backward).

Data: --data DIR reads configs/fmnist_to_kaggle.py's layout (train.csv
id,label and train/{id}.png; test labels from test_labels.csv and
test/{id}.png), decoding the PNGs with PIL; --idx SRC reads the idx files
directly (the same pixels).  Classes are the sorted distinct train labels.
Pixels are scaled to [0, 1] and normalised by the mean and standard
deviation of all train pixels.  Loading is not timed.

Timing: an epoch's seconds are the wall time of its training loop alone
(shuffle, batch gathering, forward, backward, Adam), measured with
time.perf_counter; images/s = train images / seconds.  The test set is
scored after every epoch, timed separately.  Each epoch also reports how
many cores other processes kept busy meanwhile (/proc/stat's busy time less
this process's CPU time, over the wall time): near 0, the machine was quiet.  --tta hflip also scores the
final model on horizontally flipped test images, alone and merged with the
plain predictions (mean of the softmax probabilities).

--malloc keep re-runs this script with glibc's malloc told to keep freed
memory (GLIBC_TUNABLES: mmap_threshold at its maximum, 32 MiB, and trim_threshold
at 1 GiB, so large
tensors come from the heap and are not returned to the kernel): every
batch's activations then reuse pages already mapped instead of faulting in
fresh ones.  The default is PyTorch as installed.

Prints one line per epoch, then one JSON line (also written to --json).
"""
import argparse
import csv
import gzip
import json
import os
import struct
import sys
import time

KEEP_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def parse_args(argv):
    ap = argparse.ArgumentParser(description="The issue-4 CNN in PyTorch on Fashion-MNIST.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="Kaggle folder written by configs/fmnist_to_kaggle.py")
    src.add_argument("--idx", help="folder of the Fashion-MNIST idx .gz files")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-limit", type=int, help="first N train images only")
    ap.add_argument("--test-limit", type=int, help="first N test images only")
    ap.add_argument("--tta", choices=["none", "hflip"], default="none")
    ap.add_argument("--malloc", choices=["default", "keep"], default="default")
    ap.add_argument("--conv-bias", action="store_true", help="convolutions with a bias")
    ap.add_argument("--json", help="also write the final JSON line to this file")
    a = ap.parse_args(argv)
    for name in ("epochs", "batch", "threads"):
        if getattr(a, name) < 1:
            ap.error("--%s must be at least 1" % name)
    return a


def reexec_with_kept_memory():
    """Runs this script again under GLIBC_TUNABLES that keep freed memory (once)."""
    if os.environ.get("GLIBC_TUNABLES") == KEEP_TUNABLES:
        return
    env = dict(os.environ, GLIBC_TUNABLES=KEEP_TUNABLES)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


# ---- data ----

def read_idx(path, dims):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08" or data[3] != dims:
        sys.exit("torch_cnn.py: %s: not an idx file of %d-dimensional unsigned bytes" % (path, dims))
    shape = struct.unpack(">%dI" % dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]


def load_idx(src, prefix, limit, np):
    (n, h, w), pix = read_idx(os.path.join(src, prefix + "-images-idx3-ubyte.gz"), 3)
    _, lab = read_idx(os.path.join(src, prefix + "-labels-idx1-ubyte.gz"), 1)
    n = min(n, limit or n)
    x = np.frombuffer(pix, dtype=np.uint8, count=n * h * w).reshape(n, h, w)
    return x, [str(v) for v in lab[:n]]


def read_labels(path, limit):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["id", "label"]:
        sys.exit("torch_cnn.py: %s: want a header id,label" % path)
    rows = rows[1:]
    return rows[:limit] if limit else rows


def load_pngs(folder, rows, np):
    from PIL import Image
    images = []
    for ident, _ in rows:
        path = os.path.join(folder, ident + ".png")
        with Image.open(path) as im:
            if im.mode != "L":
                sys.exit("torch_cnn.py: %s: mode %s, want 8-bit gray (L)" % (path, im.mode))
            images.append(np.asarray(im, dtype=np.uint8))
    return np.stack(images), [label for _, label in rows]


def load_data(a, np):
    """(x_train uint8 NxHxW, train labels, x_test, test labels) as strings."""
    if a.idx:
        xtr, ytr = load_idx(a.idx, "train", a.train_limit, np)
        xte, yte = load_idx(a.idx, "t10k", a.test_limit, np)
        return xtr, ytr, xte, yte
    xtr, ytr = load_pngs(os.path.join(a.data, "train"),
                         read_labels(os.path.join(a.data, "train.csv"), a.train_limit), np)
    xte, yte = load_pngs(os.path.join(a.data, "test"),
                         read_labels(os.path.join(a.data, "test_labels.csv"), a.test_limit), np)
    return xtr, ytr, xte, yte


def to_tensors(xtr, ytr, xte, yte, torch, np):
    """Normalised float tensors N x 1 x H x W and class-index tensors."""
    classes = sorted(set(ytr))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(yte) - set(index))
    if unknown:
        sys.exit("torch_cnn.py: test labels not in train: %s" % ", ".join(unknown[:5]))
    xtr_f = xtr.astype(np.float32) / 255.0
    mean, std = float(xtr_f.mean(dtype=np.float64)), float(xtr_f.std(dtype=np.float64))
    xte_f = xte.astype(np.float32) / 255.0
    norm = lambda x: torch.from_numpy((x[:, None, :, :] - mean) / std).contiguous()  # noqa: E731
    y = lambda labels: torch.tensor([index[v] for v in labels], dtype=torch.long)  # noqa: E731
    return norm(xtr_f), y(ytr), norm(xte_f), y(yte), classes, mean, std


# ---- network ----

def build_net(torch, n_classes, h, w, conv_bias):
    nn = torch.nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]
    return nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(inplace=True),
        nn.Dropout(0.3), nn.Linear(128, n_classes))


def cpu_snapshot():
    """(wall, machine busy CPU seconds from /proc/stat, this process's CPU seconds)."""
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    t = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


def other_cores(before, after):
    """Cores that other processes kept busy on average between two snapshots."""
    wall = after[0] - before[0]
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, other / wall) if wall > 0 else 0.0


def train_epoch(torch, net, opt, x, y, batch, gen):
    """Trains one epoch; returns (seconds, mean loss)."""
    F = torch.nn.functional
    net.train()
    t0 = time.perf_counter()
    perm = torch.randperm(x.shape[0], generator=gen)
    total = torch.zeros(())
    for i in range(0, x.shape[0], batch):
        idx = perm[i:i + batch]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.detach() * idx.shape[0]
    seconds = time.perf_counter() - t0
    return seconds, float(total) / x.shape[0]


def predict(torch, net, x, flip=False, batch=1000):
    """Softmax probabilities of net on x (optionally flipped left-right)."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            out.append(torch.softmax(net(torch.flip(xb, dims=[3]) if flip else xb), dim=1))
    return torch.cat(out)


def accuracy(p, y):
    return float((p.argmax(dim=1) == y).float().mean())


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(a):
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    xtr, ytr, xte, yte, classes, mean, std = to_tensors(*load_data(a, np), torch, np)
    load_s = time.perf_counter() - t0
    print("data: %d train, %d test images of %dx%d, %d classes, mean %.4f std %.4f (loaded in %.1f s)"
          % (xtr.shape[0], xte.shape[0], xtr.shape[2], xtr.shape[3], len(classes), mean, std, load_s),
          flush=True)
    net = build_net(torch, len(classes), xtr.shape[2], xtr.shape[3], a.conv_bias)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(a.seed)
    la_before = load_average()
    epochs = []
    for e in range(a.epochs):
        c0 = cpu_snapshot()
        secs, loss = train_epoch(torch, net, opt, xtr, ytr, a.batch, gen)
        other = other_cores(c0, cpu_snapshot())
        t1 = time.perf_counter()
        acc = accuracy(predict(torch, net, xte), yte)
        eval_s = time.perf_counter() - t1
        epochs.append({"seconds": secs, "loss": loss, "test_accuracy": acc, "eval_seconds": eval_s,
                       "other_cores": other})
        print("epoch %d: %.2f s, %.0f images/s, train loss %.4f, test accuracy %.4f (scored in %.2f s);"
              " other processes used %.2f cores" % (e + 1, secs, xtr.shape[0] / secs, loss, acc, eval_s,
                                                    other), flush=True)
    result = summary(a, torch, net, xtr, xte, yte, epochs, la_before)
    line = json.dumps(result, sort_keys=True)
    print(line)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")


def summary(a, torch, net, xtr, xte, yte, epochs, la_before):
    secs = [e["seconds"] for e in epochs]
    mean_s = sum(secs) / len(secs)
    r = {
        "framework": "pytorch", "torch": torch.__version__, "threads": a.threads,
        "malloc": a.malloc, "epochs": a.epochs, "batch": a.batch, "lr": a.lr, "seed": a.seed,
        "conv_bias": a.conv_bias, "n_train": int(xtr.shape[0]), "n_test": int(xte.shape[0]),
        "params": sum(p.numel() for p in net.parameters()),
        "epoch_seconds": [round(s, 3) for s in secs], "seconds_per_epoch": round(mean_s, 3),
        "images_per_s": round(xtr.shape[0] / mean_s, 1),
        "test_accuracy": epochs[-1]["test_accuracy"],
        "test_accuracy_per_epoch": [e["test_accuracy"] for e in epochs],
        "train_loss_per_epoch": [round(e["loss"], 5) for e in epochs],
        "other_cores_per_epoch": [round(e["other_cores"], 3) for e in epochs],
        "load_average_before": la_before, "load_average_after": load_average(),
    }
    if a.tta == "hflip":
        plain, flipped = predict(torch, net, xte), predict(torch, net, xte, flip=True)
        r["test_accuracy_hflip_alone"] = accuracy(flipped, yte)
        r["test_accuracy_hflip_mean"] = accuracy((plain + flipped) / 2, yte)
        print("hflip TTA: flipped alone %.4f, mean with plain %.4f (plain %.4f)"
              % (r["test_accuracy_hflip_alone"], r["test_accuracy_hflip_mean"], r["test_accuracy"]))
    return r


def main(argv):
    a = parse_args(argv)
    if a.malloc == "keep":
        reexec_with_kept_memory()
    try:
        run(a)
    except OSError as e:
        print("torch_cnn.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
