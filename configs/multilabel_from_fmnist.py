#!/usr/bin/python3
"""multilabel_from_fmnist.py - a small multi-label image competition from real images.

    python3 configs/multilabel_from_fmnist.py --out DIR [--n-train N] [--n-test N]
                                              [--seed S] [--p-blank P] [--src DIR]

Each image is a 56 x 56 mosaic of 2 x 2 Fashion-MNIST garments (Debian's
dataset-fashion-mnist, read as configs/fmnist_to_kaggle.py reads it): every
cell is blank (black) with probability P (default 0.3), else a garment drawn
uniformly; a mosaic with four blank cells is drawn again.  Its tags are the
distinct classes present, sorted, space-separated, as in Kaggle's Planet
competition.  Train mosaics take their garments from the Fashion-MNIST
train images only and test mosaics from its test images only, so no
garment appears on both sides.  The layout, Planet's with an `id` column:

    DIR/train/train_0.png ...   56 x 56 8-bit gray PNGs
    DIR/test/test_0.png ...
    DIR/train.csv               id,tags     e.g. train_0,bag sneaker tshirt_top
    DIR/test.csv                id
    DIR/sample_submission.csv   id,tags     (every row: the most frequent train tag)
    DIR/test_labels.csv         id,tags     (held out: for scoring)

Tags are lowercase with "_" for anything else (tshirt_top, trouser,
pullover, dress, coat, sandal, shirt, sneaker, bag, ankle_boot).  The draws
use only random.Random(SEED).random(), whose sequence Python guarantees
across versions, so the same options give the same bytes everywhere.
Standard library only.  Errors print one line naming the file to stderr and
exit 2.
"""
import argparse
import os
import random
import sys

sys.dont_write_bytecode = True          # no __pycache__ beside the configs
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist_to_kaggle as fm  # noqa: E402

TAGS = ["tshirt_top", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
GRID = 2


def draw_cells(rng, pool_n, p_blank):
    """GRID*GRID source indices (None = blank), at least one not blank."""
    while True:
        cells = [None if rng.random() < p_blank else int(rng.random() * pool_n)
                 for _ in range(GRID * GRID)]
        if any(c is not None for c in cells):
            return cells


def mosaic(images, labels, h, w, cells):
    """(pixels of the GRID*h x GRID*w mosaic, sorted distinct tags)."""
    size = h * w
    blank = bytes(w)
    rows = []
    for gr in range(GRID):
        for r in range(h):
            for gc in range(GRID):
                c = cells[gr * GRID + gc]
                rows.append(blank if c is None else images[c * size + r * w:c * size + (r + 1) * w])
    tags = sorted({TAGS[labels[c]] for c in cells if c is not None})
    return b"".join(rows), tags


def make_split(rng, split, prefix, n, p_blank):
    """[(id, pixels)] and [(id, tags)] of n mosaics drawn from one split."""
    images, labels, pool_n, h, w = split
    items, tags = [], []
    for i in range(n):
        pixels, t = mosaic(images, labels, h, w, draw_cells(rng, pool_n, p_blank))
        ident = "%s_%d" % (prefix, i)
        items.append((ident, pixels))
        tags.append((ident, " ".join(t)))
    return items, tags


def most_frequent_tag(tags):
    count = {}
    for _, t in tags:
        for tag in t.split():
            count[tag] = count.get(tag, 0) + 1
    return min(count, key=lambda k: (-count[k], k))


def build(src, out, n_train, n_test, seed, p_blank, jobs):
    """Writes the competition folder out."""
    train_split = fm.read_split(src, "train")
    test_split = fm.read_split(src, "t10k")
    h, w = train_split[3], train_split[4]
    if (test_split[3], test_split[4]) != (h, w):
        raise fm.DataError("%s: t10k images are %dx%d, train images %dx%d"
                           % (src, test_split[4], test_split[3], w, h))
    rng = random.Random(seed)
    train, train_tags = make_split(rng, train_split, "train", n_train, p_blank)
    test, test_tags = make_split(rng, test_split, "test", n_test, p_blank)
    fm.write_pngs(os.path.join(out, "train"), train, GRID * w, GRID * h, jobs)
    fm.write_pngs(os.path.join(out, "test"), test, GRID * w, GRID * h, jobs)
    fm.write_csv(os.path.join(out, "train.csv"), ["id", "tags"], train_tags)
    fm.write_csv(os.path.join(out, "test.csv"), ["id"], [(i,) for i, _ in test])
    default = most_frequent_tag(train_tags)
    fm.write_csv(os.path.join(out, "sample_submission.csv"), ["id", "tags"],
                 [(i, default) for i, _ in test])
    fm.write_csv(os.path.join(out, "test_labels.csv"), ["id", "tags"], test_tags)


def probability(s):
    v = float(s)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1), not %s" % s)
    return v


def main(argv):
    ap = argparse.ArgumentParser(description="A multi-label image set of Fashion-MNIST mosaics.")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--n-train", type=fm.positive, default=2000, help="train mosaics (2000)")
    ap.add_argument("--n-test", type=fm.positive, default=500, help="test mosaics (500)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the draws (42)")
    ap.add_argument("--p-blank", type=probability, default=0.3,
                    help="probability that a cell is blank (0.3)")
    ap.add_argument("--src", default=fm.SRC, help="folder of the idx .gz files (default %(default)s)")
    ap.add_argument("--jobs", type=fm.positive, default=os.cpu_count() or 1,
                    help="processes writing PNGs (default: CPUs)")
    a = ap.parse_args(argv)
    try:
        os.makedirs(a.out, exist_ok=True)
        build(a.src, a.out, a.n_train, a.n_test, a.seed, a.p_blank, a.jobs)
    except (fm.DataError, OSError) as e:
        print("multilabel_from_fmnist.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
