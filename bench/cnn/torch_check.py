#!/usr/bin/python3
"""torch_check.py - a kpipe cnn checkpoint in PyTorch: same predictions?

    python3 bench/cnn/torch_check.py CHECKPOINT DATASET KPIPE_PRED

Loads a kpipe `cnn` checkpoint (default architecture, 28 x 28 gray input)
into the equivalent torch.nn.Sequential with load_state_dict(strict=True),
feeds it the test images of the images stage's DATASET normalised as the
checkpoint's cnn.mean / cnn.std say, and compares the softmax with
KPIPE_PRED (`kpipe predict CHECKPOINT DATASET -o KPIPE_PRED.safetensors`).
Prints the largest absolute difference and the share of equal argmaxes.
Needs Debian's python3-torch and python3-numpy.
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

DTYPES = {"F32": np.float32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16}


def load(path):
    """Returns ({name: array}, metadata) of a safetensors file."""
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] not in DTYPES:
            continue
        start, end = t["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, header.get("__metadata__", {})


def cbr(i, o):
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]


def main():
    ckpt, meta = load(sys.argv[1])
    data, _ = load(sys.argv[2])
    pred, _ = load(sys.argv[3])
    net = nn.Sequential(*cbr(1, 32), *cbr(32, 32), nn.MaxPool2d(2), *cbr(32, 64), *cbr(64, 64),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                        nn.Dropout(0.3), nn.Linear(128, 10))
    print(net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ckpt.items()}, strict=True))
    net.eval()
    mean = np.array(json.loads(meta["cnn.mean"]), np.float32)
    std = np.array(json.loads(meta["cnn.std"]), np.float32)
    x = (data["images_test"].astype(np.float32) - mean) / std          # N x H x W x C
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # N x C x H x W
    with torch.no_grad():
        p = torch.softmax(net(x), dim=1).numpy()
    q = pred["pred"]
    print("images %d, max |torch - kpipe| %.2e, same argmax %.4f"
          % (len(p), np.abs(p - q).max(), (p.argmax(1) == q.argmax(1)).mean()))


if __name__ == "__main__":
    main()
