#!/usr/bin/python3
"""torch_unet.py - the issue-5 benchmark UNet in PyTorch, on configs/fmnist_segmentation.py's data.

    /usr/bin/python3 bench/seg/torch_unet.py --bin DIR/bench.bin [--train N] [--valid N]
        [--val-split test|train] [--epochs 5] [--batch 32] [--lr 1e-3] [--threads 2]
        [--seed 0] [--depth 3] [--base 16] [--up transpose|bilinear]
        [--malloc default|keep] [--json FILE] [--save FILE]

Data: bench.bin as `configs/fmnist_segmentation.py --out DIR --bench-bin`
writes it ("KPSEG1\\n", int32 n_train, n_test, size, then uint8 train
images, train masks 0/1, test images, test masks).  Training uses the first
--train train images (default all).  Validation (--valid, default 2000,
capped at what there is) uses the first test images by default (their
garments come from Fashion-MNIST's t10k set, so none is seen in training;
these are also what kpipe predicts from test/ and scores against
test_masks.csv); --val-split train takes the train images that follow the
--train ones instead.  Pixels are scaled to [0, 1] and normalised by the
mean and standard deviation of the training images' pixels.  Loading is
not timed.

The network (state_dict names are what kpipe's unet builds):
    Block(cin, cout) = Sequential(Conv2d(cin, cout, 3, padding=1, bias=False),
        BatchNorm2d(cout), ReLU, Conv2d(cout, cout, 3, padding=1, bias=False),
        BatchNorm2d(cout), ReLU)                    -> X.0.weight, X.1.*, X.3.weight, X.4.*
    enc.0 .. enc.depth: Block(1, base), Block(base, 2 base), ..., the last the
        bottleneck (2^depth base channels); MaxPool2d(2) between them
    up.i: ConvTranspose2d(c, c/2, 2, stride=2) (c = 2^(depth-i) base), or with
        --up bilinear Sequential(Upsample(x2, bilinear, align_corners=False),
        Conv2d(c, c/2, 3, padding=1))               -> up.i.1.*
    dec.i: Block(c, c/2) on cat([up.i(x), skip], dim=1), the skip of enc.(depth-1-i)
    head: Conv2d(base, 1, 1) with a bias; the output is the mask's logit map
Depth 3, base 16: 482,449 parameters.  PyTorch's default initialisation;
Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8, no weight decay); loss =
BCEWithLogits (mean over pixels) + soft Dice (per image
1 - (2 sum p y + 1) / (sum p + sum y + 1), p = sigmoid, mean over images);
batch 32 with the last partial batch kept; a fresh seeded shuffle every
epoch; no augmentation.

Scoring, as Kaggle's Ultrasound Nerve: per image the Dice of (p > 0.5)
against the truth, 1 when both are empty, mean over images.  After the last
epoch the validation images are also scored with hflip TTA: the mean of p(x)
and flip(p(flip(x))), then > 0.5.

Timing: an epoch's seconds are the wall time of its training loop alone
(shuffle, batch gathering, forward, backward, Adam), time.perf_counter;
images/s = train images / seconds.  Validation is timed separately.  Each
epoch also reports how many cores other processes kept busy meanwhile (as
bench/cnn/torch_cnn.py does; near 0 = a quiet machine).  --malloc keep: as
torch_cnn.py.

Prints one line per epoch, then one JSON line (also written to --json).
--save FILE writes the trained state_dict as safetensors (8-byte LE header
length, JSON header padded with spaces to a multiple of 8, raw LE data;
F32 tensors and num_batches_tracked as I64 scalars, the I64 ones first so
every tensor is aligned), with metadata: the architecture and the
normalisation (mean, std in [0, 1] pixel units).
"""
import argparse
import json
import os
import struct
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cnn"))
import torch_cnn as tc  # noqa: E402  (cpu_snapshot, other_cores, load_average, malloc re-exec)

MAGIC = b"KPSEG1\n"


def parse_args(argv):
    ap = argparse.ArgumentParser(description="The issue-5 UNet in PyTorch on the Fashion-MNIST "
                                             "segmentation set.")
    ap.add_argument("--bin", required=True, help="bench.bin of configs/fmnist_segmentation.py")
    ap.add_argument("--train", type=int, help="first N train images (default: all)")
    ap.add_argument("--valid", type=int, default=2000, help="validation images (2000)")
    ap.add_argument("--val-split", choices=["test", "train"], default="test")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--up", choices=["transpose", "bilinear"], default="transpose")
    ap.add_argument("--malloc", choices=["default", "keep"], default="default")
    ap.add_argument("--json", help="also write the final JSON line to this file")
    ap.add_argument("--save", help="write the trained state_dict to this safetensors file")
    a = ap.parse_args(argv)
    for name in ("epochs", "batch", "threads", "depth", "base", "valid"):
        if getattr(a, name) < 1:
            ap.error("--%s must be at least 1" % name)
    if a.train is not None and a.train < 1:
        ap.error("--train must be at least 1")
    return a


# ---- data ----

class DataError(Exception):
    """A bad bench.bin; the message names it."""


def read_bench_bin(path, np):
    """(train images, train masks, test images, test masks) as uint8 n x s x s arrays."""
    with open(path, "rb") as f:
        data = f.read()
    head = len(MAGIC) + 12
    if len(data) < head or data[:len(MAGIC)] != MAGIC:
        raise DataError("%s: not a bench.bin (bad magic)" % path)
    ntr, nte, s = struct.unpack("<iii", data[len(MAGIC):head])
    if ntr < 1 or nte < 0 or s < 1 or len(data) != head + 2 * (ntr + nte) * s * s:
        raise DataError("%s: %d bytes for %d train + %d test images of %dx%d"
                        % (path, len(data), ntr, nte, s, s))
    arrays, off = [], head
    for n in (ntr, ntr, nte, nte):
        arrays.append(np.frombuffer(data, dtype=np.uint8, count=n * s * s, offset=off).reshape(n, s, s))
        off += n * s * s
    return arrays


def split_data(a, arrays):
    """(x_train, y_train, x_valid, y_valid) uint8 arrays per --train/--valid/--val-split."""
    xtr, ytr, xte, yte = arrays
    n = min(a.train or xtr.shape[0], xtr.shape[0])
    if a.val_split == "train":
        xv, yv = xtr[n:n + a.valid], ytr[n:n + a.valid]
    else:
        xv, yv = xte[:a.valid], yte[:a.valid]
    if xv.shape[0] == 0:
        raise DataError("%s: no %s images left for validation" % (a.bin, a.val_split))
    return xtr[:n], ytr[:n], xv, yv


def to_tensors(torch, np, xtr, ytr, xv, yv):
    """Normalised float tensors N x 1 x H x W, float 0/1 masks N x 1 x H x W, mean, std."""
    ftr = xtr.astype(np.float32) / 255.0
    mean, std = float(ftr.mean(dtype=np.float64)), float(ftr.std(dtype=np.float64))
    norm = lambda x: torch.from_numpy(((x.astype(np.float32) / 255.0 - mean) / std)[:, None]).contiguous()  # noqa: E731,E501
    mask = lambda m: torch.from_numpy(m.astype(np.float32)[:, None]).contiguous()  # noqa: E731
    return norm(xtr), mask(ytr), norm(xv), mask(yv), mean, std


# ---- network ----

def build_net(torch, in_ch=1, classes=1, depth=3, base=16, up="transpose"):
    """The UNet of the module docstring."""
    nn = torch.nn

    class Block(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def upsampler(c):
        if up == "transpose":
            return nn.ConvTranspose2d(c, c // 2, 2, stride=2)
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                             nn.Conv2d(c, c // 2, 3, padding=1))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [base << i for i in range(depth + 1)]
            self.depth = depth
            self.enc = nn.ModuleList([Block(in_ch, base)] +
                                     [Block(widths[i], widths[i + 1]) for i in range(depth)])
            self.pool = nn.MaxPool2d(2)
            self.up = nn.ModuleList([upsampler(widths[depth - i]) for i in range(depth)])
            self.dec = nn.ModuleList([Block(widths[depth - i], widths[depth - i - 1])
                                      for i in range(depth)])
            self.head = nn.Conv2d(base, classes, 1)

        def forward(self, x):
            skips = []
            for i in range(self.depth):
                x = self.enc[i](x)
                skips.append(x)
                x = self.pool(x)
            x = self.enc[self.depth](x)
            for i in range(self.depth):
                x = self.dec[i](torch.cat([self.up[i](x), skips[self.depth - 1 - i]], dim=1))
            return self.head(x)

    return UNet()


def seg_loss(torch, logits, y):
    """BCEWithLogits (mean) + soft Dice (per image, smoothed by 1, mean over images)."""
    F = torch.nn.functional
    bce = F.binary_cross_entropy_with_logits(logits, y)
    p = torch.sigmoid(logits).flatten(1)
    t = y.flatten(1)
    dice = (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + (1 - dice).mean()


def train_epoch(torch, net, opt, x, y, batch, gen):
    """Trains one epoch; returns (seconds, mean loss over images)."""
    net.train()
    t0 = time.perf_counter()
    perm = torch.randperm(x.shape[0], generator=gen)
    total = torch.zeros(())
    for i in range(0, x.shape[0], batch):
        idx = perm[i:i + batch]
        opt.zero_grad(set_to_none=True)
        loss = seg_loss(torch, net(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.detach() * idx.shape[0]
    return time.perf_counter() - t0, float(total) / x.shape[0]


def predict(torch, net, x, flip=False, batch=250):
    """Sigmoid probability maps of net on x (N x 1 x H x W); flip: of flipped x, flipped back."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            if flip:
                out.append(torch.flip(torch.sigmoid(net(torch.flip(xb, dims=[3]))), dims=[3]))
            else:
                out.append(torch.sigmoid(net(xb)))
    return torch.cat(out)


def kaggle_dice(p, y):
    """Mean over images of the Dice of (p > 0.5) and y, 1 for an image where both are empty."""
    a = (p > 0.5).flatten(1).float()
    b = y.flatten(1)
    inter, total = (a * b).sum(1), a.sum(1) + b.sum(1)
    d = (2 * inter).double() / total.double().clamp(min=1)
    d[total == 0] = 1.0
    return float(d.mean())


# ---- safetensors ----

def save_safetensors(torch, net, path, meta):
    """Writes net's state_dict to path (I64 scalars first, then F32), via a temporary file."""
    sd = net.state_dict()
    order = [k for k, v in sd.items() if v.dtype == torch.int64] + \
            [k for k, v in sd.items() if v.dtype != torch.int64]
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k in order:
        v = sd[k].detach().contiguous()
        if v.dtype == torch.int64:
            dtype, raw = "I64", struct.pack("<%dq" % v.numel(), *v.flatten().tolist())
        elif v.dtype == torch.float32:
            dtype, raw = "F32", v.numpy().astype("<f4").tobytes()
        else:
            raise DataError("%s: tensor %s has dtype %s" % (path, k, v.dtype))
        header[k] = {"dtype": dtype, "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


# ---- the run ----

def run(a):
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    xtr, ytr, xv, yv = split_data(a, read_bench_bin(a.bin, np))
    xtr, ytr, xv, yv, mean, std = to_tensors(torch, np, xtr, ytr, xv, yv)
    print("data: %d train, %d valid (%s split) images of %dx%d, mask fraction %.4f, empty masks"
          " %.3f train / %.3f valid, mean %.4f std %.4f (loaded in %.1f s)"
          % (xtr.shape[0], xv.shape[0], a.val_split, xtr.shape[2], xtr.shape[3], float(ytr.mean()),
             float((ytr.flatten(1).sum(1) == 0).float().mean()),
             float((yv.flatten(1).sum(1) == 0).float().mean()), mean, std,
             time.perf_counter() - t0), flush=True)
    net = build_net(torch, 1, 1, a.depth, a.base, a.up)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(a.seed)
    la_before = tc.load_average()
    epochs = []
    for e in range(a.epochs):
        c0 = tc.cpu_snapshot()
        secs, loss = train_epoch(torch, net, opt, xtr, ytr, a.batch, gen)
        other = tc.other_cores(c0, tc.cpu_snapshot())
        t1 = time.perf_counter()
        dice = kaggle_dice(predict(torch, net, xv), yv)
        eval_s = time.perf_counter() - t1
        epochs.append({"seconds": secs, "loss": loss, "valid_dice": dice, "eval_seconds": eval_s,
                       "other_cores": other})
        print("epoch %d: %.2f s, %.1f images/s, train loss %.4f, valid Dice %.4f (scored in %.2f s);"
              " other processes used %.2f cores" % (e + 1, secs, xtr.shape[0] / secs, loss, dice,
                                                    eval_s, other), flush=True)
    result = summary(a, torch, net, xtr, xv, yv, epochs, la_before, mean, std)
    line = json.dumps(result, sort_keys=True)
    print(line)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")
    if a.save:
        meta = {"source": "bench/seg/torch_unet.py", "torch": torch.__version__,
                "unet.in_ch": "1", "unet.classes": "1", "unet.depth": str(a.depth),
                "unet.base": str(a.base), "unet.up": a.up,
                "norm.mean": repr(mean), "norm.std": repr(std)}
        save_safetensors(torch, net, a.save, meta)


def summary(a, torch, net, xtr, xv, yv, epochs, la_before, mean, std):
    secs = [e["seconds"] for e in epochs]
    mean_s = sum(secs) / len(secs)
    plain = predict(torch, net, xv)
    flipped = predict(torch, net, xv, flip=True)
    r = {
        "framework": "pytorch", "torch": torch.__version__, "threads": a.threads,
        "malloc": a.malloc, "epochs": a.epochs, "batch": a.batch, "lr": a.lr, "seed": a.seed,
        "depth": a.depth, "base": a.base, "up": a.up, "val_split": a.val_split,
        "n_train": int(xtr.shape[0]), "n_valid": int(xv.shape[0]), "size": int(xtr.shape[2]),
        "mean": mean, "std": std, "params": sum(p.numel() for p in net.parameters()),
        "epoch_seconds": [round(s, 3) for s in secs], "seconds_per_epoch": round(mean_s, 3),
        "images_per_s": round(xtr.shape[0] / mean_s, 1),
        "valid_dice": epochs[-1]["valid_dice"],
        "valid_dice_per_epoch": [e["valid_dice"] for e in epochs],
        "train_loss_per_epoch": [round(e["loss"], 5) for e in epochs],
        "other_cores_per_epoch": [round(e["other_cores"], 3) for e in epochs],
        "valid_dice_hflip_alone": kaggle_dice(flipped, yv),
        "valid_dice_hflip_tta": kaggle_dice((plain + flipped) / 2, yv),
        "load_average_before": la_before, "load_average_after": tc.load_average(),
    }
    print("hflip TTA: flipped alone %.4f, mean with plain %.4f (plain %.4f)"
          % (r["valid_dice_hflip_alone"], r["valid_dice_hflip_tta"], r["valid_dice"]))
    return r


def main(argv):
    a = parse_args(argv)
    if a.malloc == "keep":
        tc.reexec_with_kept_memory()
    try:
        run(a)
    except (DataError, OSError) as e:
        print("torch_unet.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
