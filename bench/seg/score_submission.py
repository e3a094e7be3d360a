#!/usr/bin/python3
"""score_submission.py SUBMISSION TRUTH [--size WxH] [--order column|row]

Scores a segmentation submission (id,rle) against held-out masks (id,rle,
e.g. configs/fmnist_segmentation.py's test_masks.csv) as Kaggle scored
Ultrasound Nerve: Dice per image (both empty = 1), mean over the truth's
images. Standard library only; every image is --size (default 64x64)."""
import argparse
import csv
import sys


def decode(s, n):
    on = set()
    v = [int(t) for t in s.split()]
    for start, length in zip(v[0::2], v[1::2]):
        if start < 1 or start - 1 + length > n:
            raise ValueError("run %d %d outside %d pixels" % (start, length, n))
        on.update(range(start - 1, start - 1 + length))
    return on


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("submission")
    ap.add_argument("truth")
    ap.add_argument("--size", default="64x64")
    a = ap.parse_args(argv)
    w, h = (int(x) for x in a.size.split("x"))
    with open(a.submission, newline="") as f:
        sub = {r[0]: r[1] for r in list(csv.reader(f))[1:]}
    with open(a.truth, newline="") as f:
        truth = {r[0]: r[1] for r in list(csv.reader(f))[1:]}
    total = 0.0
    for img, rle in truth.items():
        if img not in sub:
            sys.exit("score_submission.py: %s has no row for %s" % (a.submission, img))
        p, t = decode(sub[img], w * h), decode(rle, w * h)
        total += 1.0 if not p and not t else 2.0 * len(p & t) / (len(p) + len(t))
    print("%s: Dice %.4f over %d images" % (a.submission, total / len(truth), len(truth)))


main(sys.argv[1:])
