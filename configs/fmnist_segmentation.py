#!/usr/bin/python3
"""fmnist_segmentation.py - a Kaggle segmentation competition built from Fashion-MNIST.

    python3 configs/fmnist_segmentation.py --out DIR [--train-limit N] [--test-limit N]
                                           [--size 64] [--seed 0] [--jobs N]
                                           [--src DIR] [--bench-bin]

Every image is SIZE x SIZE 8-bit gray (default 64), composed from Debian's
dataset-fashion-mnist (read as configs/fmnist_to_kaggle.py reads it):

  - a cluttered background: a random gray level, then 3-6 other garments
    (any class, upscaled to 0.31-0.63 SIZE) at low contrast (0.12-0.40),
    merged by maximum;
  - 1-3 garments (each equally likely) pasted at random positions, some
    partly outside the image, each upscaled with bilinear interpolation to
    0.375-0.69 SIZE (24-44 px at 64) with its own aspect jitter (+-10%),
    flipped left-right with probability 1/2, at contrast 0.55-1.0; a
    garment is a top with probability 0.55, else a distractor;
  - noise: an approximately Gaussian field, its standard deviation drawn per
    image in 4-16 gray levels.

The MASK is the silhouette (upscaled garment value > 40 of 255) of the top
garments only: T-shirt/top, Pullover, Dress, Coat, Shirt.  Trouser, Sandal,
Sneaker, Bag and Ankle boot are distractors.  Garments are drawn in paste
order, so a later garment hides an earlier one from the image and the mask.
About 25% of the masks are empty (no top drawn, or every top hidden), as in
Ultrasound Nerve, so the empty-mask convention matters.  Nothing is a
threshold of the image: a bright distractor and a faint background top have
no mask, a dim interior pixel of a top has one.

Train images take every garment (background ones too) from the
Fashion-MNIST train images, test images only from its t10k images.  The
layout (Ultrasound Nerve's, plus PNG masks):

    DIR/train/tr00001.png ...      images, ids tr00001.. (te00001.. for test)
    DIR/train/tr00001_mask.png ... masks, 8-bit gray, 0 or 255
    DIR/train.csv                  img,pixels  (RLE of the mask)
    DIR/test/te00001.png ...
    DIR/test.csv                   img
    DIR/sample_submission.csv      img,pixels  (pixels empty)
    DIR/test_masks.csv             img,pixels  (held out: the true test RLE)
    DIR/bench.bin                  only with --bench-bin, see below

RLE as Ultrasound Nerve scores it: pixels numbered COLUMN-major (top to
bottom, then left to right), from 1; "start length" pairs, sorted,
separated by spaces; "" for an empty mask.  Every mask's RLE is decoded
again and checked against the mask before it is written.

bench.bin (for bench/seg/): "KPSEG1\\n", then little-endian int32 n_train,
n_test, size; then the train images, the train masks (0/1), the test
images, the test masks, each n x size x size bytes, row-major.

Determinism: image i of a split is drawn from its own random.Random seeded
with (seed, split, i) and uses only random(), whose sequence Python
guarantees across versions; the noise comes from one table drawn from
random.Random(seed).  So the same options give the same bytes for any
--jobs, and image i is the same for every limit >= i.  --train-limit and
--test-limit (default 10000 and 2000) are the numbers of images to compose.
PNGs of an earlier run with larger limits are left in place (no CSV names
them); the CSVs and bench.bin are written last, each via a temporary name.

Standard library only (the tests run it through a kpipe command stage on
machines without numpy).  About 4.5 ms of CPU an image: 10,000 + 2,000
images in 27 s with --jobs 2 on a quiet machine.  Errors (a
missing or malformed idx file, a bad option) print one line to stderr and
exit 2.
"""
import argparse
import os
import random
import re
import struct
import sys

sys.dont_write_bytecode = True          # no __pycache__ beside the configs
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist_to_kaggle as fm  # noqa: E402

TOP_CLASSES = (0, 2, 3, 4, 6)           # T-shirt/top, Pullover, Dress, Coat, Shirt
MASK_THRESHOLD = 40                     # upscaled garment value above it: silhouette
P_TOP = 0.55
NOISE_TABLE = 1 << 16
SPLITS = {"train": 0, "t10k": 1}


# ---- run-length encoding (column-major, 1-indexed) ----

def rle_encode(mask, width, height):
    """The RLE string of mask (row-major bytes, 0/1) in column-major order."""
    cols = b"".join(mask[x::width] for x in range(width))
    assert len(cols) == width * height
    return " ".join("%d %d" % (m.start() + 1, m.end() - m.start())
                    for m in re.finditer(b"\x01+", cols))


def rle_decode(rle, width, height):
    """The row-major 0/1 mask bytes of an RLE string; ValueError if malformed."""
    nums = [int(t) for t in rle.split()]
    if len(nums) % 2:
        raise ValueError("odd number of values in RLE")
    cols = bytearray(width * height)
    end = 0
    for start, length in zip(nums[0::2], nums[1::2]):
        if start <= end or length < 1 or start - 1 + length > width * height:
            raise ValueError("run %d %d out of order or out of range" % (start, length))
        cols[start - 1:start - 1 + length] = b"\x01" * length
        end = start - 1 + length
    return b"".join(bytes(cols[y::height]) for y in range(height))


# ---- composing one image ----

_TABS = {}


def interp_table(src_n, dst_n):
    """[(i0, i1, w1)] of a bilinear resize src_n -> dst_n (align_corners=False)."""
    key = (src_n, dst_n)
    if key not in _TABS:
        tab = []
        for d in range(dst_n):
            s = min(max((d + 0.5) * src_n / dst_n - 0.5, 0.0), src_n - 1.0)
            i0 = int(s)
            i1 = min(i0 + 1, src_n - 1)
            tab.append((i0, i1, s - i0))
        _TABS[key] = tab
    return _TABS[key]


def resize(pixels, h, w, dst_h, dst_w, flip):
    """Bilinear resize of h x w bytes to dst_h rows of dst_w floats (mirrored if flip)."""
    htab = interp_table(w, dst_w)
    if flip:
        htab = htab[::-1]
    rows = []
    for r in range(h):
        src = pixels[r * w:(r + 1) * w]
        rows.append([src[a] + (src[b] - src[a]) * f for a, b, f in htab])
    out = []
    for a, b, f in interp_table(h, dst_h):
        ra, rb = rows[a], rows[b]
        out.append([p + (q - p) * f for p, q in zip(ra, rb)] if f else ra)
    return out


def place(size, n, rng, lo_frac):
    """(first visible index, source offset, count) for an n-long item placed at random."""
    pos = int(-n * lo_frac + rng.random() * (size - n + 2 * n * lo_frac + 1))
    first = max(pos, 0)
    return first, first - pos, min(pos + n, size) - first


class Source:
    """The garments of one split: pixels, labels, index lists per group."""

    def __init__(self, images, labels, n, h, w):
        self.images, self.h, self.w = images, h, w
        self.tops = [i for i in range(n) if labels[i] in TOP_CLASSES]
        self.others = [i for i in range(n) if labels[i] not in TOP_CLASSES]
        self.count = n

    def pixels(self, i):
        size = self.h * self.w
        return self.images[i * size:(i + 1) * size]


def draw_garment(rng, src, index, size, lo, hi, jitter):
    """Rows of floats of garment index resized to a random size in [lo, hi) x size."""
    s = size * (lo + (hi - lo) * rng.random())
    gh = max(2, int(s * (1 - jitter + 2 * jitter * rng.random())))
    gw = max(2, int(s * (1 - jitter + 2 * jitter * rng.random())))
    return resize(src.pixels(index), src.h, src.w, gh, gw, rng.random() < 0.5)


def add_clutter(rng, src, canvas, size, base):
    """Merges 3-6 faint garments into canvas (list of floats) by maximum."""
    for _ in range(3 + int(rng.random() * 4)):
        g = draw_garment(rng, src, int(rng.random() * src.count), size, 0.31, 0.63, 0.1)
        c = 0.12 + 0.28 * rng.random()
        y0, gy, ny = place(size, len(g), rng, 0.5)
        x0, gx, nx = place(size, len(g[0]), rng, 0.5)
        for r in range(ny):
            o = (y0 + r) * size + x0
            row = g[gy + r][gx:gx + nx]
            canvas[o:o + nx] = [a if a > v else v for a, v in
                                zip(canvas[o:o + nx], [base + c * p for p in row])]


def paste_garment(rng, src, canvas, mask, size, base):
    """Pastes one garment over canvas; marks its silhouette 1 (top) or 0 in mask."""
    top = rng.random() < P_TOP
    group = src.tops if top else src.others
    g = draw_garment(rng, src, group[int(rng.random() * len(group))], size, 0.375, 0.69, 0.1)
    c = 0.55 + 0.45 * rng.random()
    y0, gy, ny = place(size, len(g), rng, 0.25)
    x0, gx, nx = place(size, len(g[0]), rng, 0.25)
    t = MASK_THRESHOLD
    for r in range(ny):
        o = (y0 + r) * size + x0
        row = g[gy + r][gx:gx + nx]
        canvas[o:o + nx] = [base + c * p if p > t else a for a, p in zip(canvas[o:o + nx], row)]
        mask[o:o + nx] = bytes(top if p > t else m for m, p in zip(mask[o:o + nx], row))


_CLIP = bytes(min(max(v - 256, 0), 255) for v in range(1024))


def compose(rng, src, size, noise):
    """(image bytes, mask bytes 0/1) of one picture, both size x size row-major."""
    base = 50 * rng.random()
    canvas = [base] * (size * size)
    mask = bytearray(size * size)
    add_clutter(rng, src, canvas, size, base)
    for _ in range(1 + int(rng.random() * 3)):
        paste_garment(rng, src, canvas, mask, size, base)
    sigma = 4 + 12 * rng.random()
    off = int(rng.random() * (len(noise) - size * size))
    image = bytes(_CLIP[int(v + sigma * n + 256.5)]
                  for v, n in zip(canvas, noise[off:off + size * size]))
    return image, bytes(mask)


def noise_table(seed, size):
    """NOISE_TABLE + size^2 values of unit variance (sums of 3 uniforms) from seed."""
    r = random.Random(seed).random
    return [(r() + r() + r() - 1.5) * 2.0 for _ in range(NOISE_TABLE + size * size)]


# ---- writing a split, split over forked processes (they inherit _JOB) ----

_JOB = None
_MASK_PNG = bytes([0, 255]) + bytes(254)


def _compose_range(bounds):
    """[(rle, image, mask)] of images bounds[0]..bounds[1]-1, PNGs written."""
    folder, prefix, split, src, size, seed, noise = _JOB
    out = []
    for i in range(bounds[0], bounds[1]):
        rng = random.Random((seed * 2 + split) * (1 << 32) + i)
        image, mask = compose(rng, src, size, noise)
        rle = rle_encode(mask, size, size)
        assert rle_decode(rle, size, size) == mask
        ident = "%s%05d" % (prefix, i + 1)
        with open(os.path.join(folder, ident + ".png"), "wb") as f:
            f.write(fm.png_gray8(image, size, size))
        if prefix == "tr":
            with open(os.path.join(folder, ident + "_mask.png"), "wb") as f:
                f.write(fm.png_gray8(mask.translate(_MASK_PNG), size, size))
        out.append((ident, rle, image, mask))
    return out


def compose_split(folder, prefix, split, src, n, size, seed, noise, jobs):
    """[(id, rle, image, mask)] of n images, their PNGs written to folder."""
    global _JOB
    os.makedirs(folder, exist_ok=True)
    _JOB = (folder, prefix, split, src, size, seed, noise)
    try:
        if jobs <= 1 or n < 200:
            return _compose_range((0, n))
        import multiprocessing
        step = (n + 8 * jobs - 1) // (8 * jobs)
        ranges = [(i, min(i + step, n)) for i in range(0, n, step)]
        out = []
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for part in pool.imap(_compose_range, ranges):
                out.extend(part)
        return out
    finally:
        _JOB = None


def write_bench_bin(path, train, test, size):
    """Writes the raw arrays of both splits to path via a temporary file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"KPSEG1\n" + struct.pack("<iii", len(train), len(test), size))
        for items in (train, test):
            f.write(b"".join(it[2] for it in items))
            f.write(b"".join(it[3] for it in items))
    os.replace(tmp, path)


def build(a):
    """Writes the competition folder a.out; returns (train items, test items)."""
    tr = fm.read_split(a.src, "train")
    te = fm.read_split(a.src, "t10k")
    noise = noise_table(a.seed, a.size)
    train = compose_split(os.path.join(a.out, "train"), "tr", SPLITS["train"], Source(*tr),
                          a.train_limit, a.size, a.seed, noise, a.jobs)
    test = compose_split(os.path.join(a.out, "test"), "te", SPLITS["t10k"], Source(*te),
                         a.test_limit, a.size, a.seed, noise, a.jobs)
    if a.bench_bin:
        write_bench_bin(os.path.join(a.out, "bench.bin"), train, test, a.size)
    fm.write_csv(os.path.join(a.out, "train.csv"), ["img", "pixels"], [it[:2] for it in train])
    fm.write_csv(os.path.join(a.out, "test.csv"), ["img"], [it[:1] for it in test])
    fm.write_csv(os.path.join(a.out, "sample_submission.csv"), ["img", "pixels"],
                 [(it[0], "") for it in test])
    fm.write_csv(os.path.join(a.out, "test_masks.csv"), ["img", "pixels"], [it[:2] for it in test])
    return train, test


def self_check():
    """Asserts RLE round trips on edge cases (first/last pixel, full, empty, odd sizes)."""
    for w, h in ((1, 1), (3, 2), (5, 7), (64, 64)):
        n = w * h
        cases = [bytes(n), b"\x01" * n, b"\x01" + bytes(n - 1), bytes(n - 1) + b"\x01",
                 bytes(i % 3 == 0 for i in range(n)), bytes((i // w) % 2 for i in range(n))]
        for m in cases:
            assert rle_decode(rle_encode(m, w, h), w, h) == m
    assert rle_encode(bytes([0, 1, 1, 1, 0, 0]), 3, 2) == "2 2 5 1"   # columns: 0 1 | 1 0 | 1 0
    assert rle_encode(bytes(6), 3, 2) == ""


def main(argv):
    ap = argparse.ArgumentParser(description="A Fashion-MNIST segmentation competition folder.")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--train-limit", type=fm.positive, default=10000, help="train images (10000)")
    ap.add_argument("--test-limit", type=fm.positive, default=2000, help="test images (2000)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels, 32-1024 (64)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws, >= 0 (0)")
    ap.add_argument("--src", default=fm.SRC, help="folder of the idx .gz files (default %(default)s)")
    ap.add_argument("--jobs", type=fm.positive, default=os.cpu_count() or 1,
                    help="processes composing images (default: CPUs)")
    ap.add_argument("--bench-bin", action="store_true", help="also write DIR/bench.bin")
    a = ap.parse_args(argv)
    if not 32 <= a.size <= 1024:
        ap.error("--size must be in 32-1024, not %d" % a.size)
    if a.seed < 0:
        ap.error("--seed must be >= 0, not %d" % a.seed)
    self_check()
    try:
        os.makedirs(a.out, exist_ok=True)
        build(a)
    except (fm.DataError, OSError) as e:
        print("fmnist_segmentation.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
