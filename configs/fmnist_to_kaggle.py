#!/usr/bin/python3
"""fmnist_to_kaggle.py - Fashion-MNIST as a Kaggle image competition folder.

    python3 configs/fmnist_to_kaggle.py --out DIR [--train-limit N] [--test-limit N]
                                        [--src DIR] [--jobs N]

Reads Debian's dataset-fashion-mnist (SRC/{train,t10k}-{images-idx3,
labels-idx1}-ubyte.gz, SRC default /usr/share/datasets/fashion-mnist) and
writes the layout Kaggle ships for an image competition:

    DIR/train/tr00001.png ...   28 x 28 8-bit gray PNGs, the first N train images
    DIR/test/te00001.png ...    the first N test (t10k) images
    DIR/train.csv               id,label   (label: the class name, e.g. T-shirt/top)
    DIR/test.csv                id
    DIR/sample_submission.csv   id,label   (every row T-shirt/top)
    DIR/test_labels.csv         id,label   (held out: for scoring a submission)

Ids are numbered from 1 in the files' order.  The labels are Zalando's class
names; none holds a comma, so the CSVs need no quoting.  The output is the
same bytes on every run (with the same zlib): PNGs have one IHDR, one IDAT
(filter 0 on every row, zlib level 1) and IEND, nothing dated.  Level 1:
level 9 took about 1.5x the CPU for files 2.5% smaller, and each file fits
in one 4 KiB disk block either way.  The CSVs are written last,
each to a temporary name then renamed, so a folder with test_labels.csv is
complete.  PNGs of an earlier run with larger limits are left in place (no
CSV names them).  Python's standard library only: the tests run it through
a kpipe command stage on machines without numpy.

--jobs (default: the number of CPUs) writes the PNGs from that many
processes.  Errors (a missing or malformed idx file, a limit above the
number of images) print one line naming the file to stderr and exit 2.
"""
import argparse
import gzip
import os
import struct
import sys
import zlib

SRC = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DataError(Exception):
    """A bad input file or option; the message names it."""


def read_idx(path, want_dims):
    """(dims, bytes) of an idx file of unsigned bytes (gzip), checked."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError("%s: cannot read: %s" % (path, e))
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError("%s: not an idx file of unsigned bytes (bad magic)" % path)
    if data[3] != want_dims:
        raise DataError("%s: has %d dimensions, want %d" % (path, data[3], want_dims))
    head = 4 + 4 * want_dims
    if len(data) < head:
        raise DataError("%s: truncated header" % path)
    dims = struct.unpack(">%dI" % want_dims, data[4:head])
    size = 1
    for d in dims:
        size *= d
    if len(data) - head != size:
        raise DataError("%s: %d data bytes for dimensions %s, want %d"
                        % (path, len(data) - head, "x".join(map(str, dims)), size))
    return dims, data[head:]


def read_split(src, prefix):
    """(images bytes, labels bytes, n, height, width) of one split, checked."""
    ipath = os.path.join(src, prefix + "-images-idx3-ubyte.gz")
    lpath = os.path.join(src, prefix + "-labels-idx1-ubyte.gz")
    (n, h, w), images = read_idx(ipath, 3)
    (nl,), labels = read_idx(lpath, 1)
    if nl != n:
        raise DataError("%s: %d labels for the %d images of %s" % (lpath, nl, n, ipath))
    bad = next((i for i, v in enumerate(labels) if v >= len(CLASSES)), None)
    if bad is not None:
        raise DataError("%s: label %d of item %d is not a class 0-9"
                        % (lpath, labels[bad], bad))
    return images, labels, n, h, w


def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_gray8(pixels, width, height):
    """The bytes of an 8-bit gray PNG of pixels (row-major, width*height bytes)."""
    raw = b"".join(b"\x00" + pixels[r * width:(r + 1) * width] for r in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw, 1)) + png_chunk(b"IEND", b""))


def write_csv(path, header, rows):
    """Writes header and rows (tuples of str) to path via a temporary file."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")
    os.replace(tmp, path)


# PNG writing, split over forked processes that inherit _JOB (folder, items,
# width, height) and are sent only index ranges.
_JOB = None


def _write_range(bounds):
    folder, items, width, height = _JOB
    for ident, pixels in items[bounds[0]:bounds[1]]:
        with open(os.path.join(folder, ident + ".png"), "wb") as f:
            f.write(png_gray8(pixels, width, height))
    return bounds[1] - bounds[0]


def write_pngs(folder, items, width, height, jobs):
    """Writes items [(id, pixels)] as folder/{id}.png with jobs processes."""
    global _JOB
    os.makedirs(folder, exist_ok=True)
    _JOB = (folder, items, width, height)
    try:
        if jobs <= 1 or len(items) < 2000:
            _write_range((0, len(items)))
            return
        import multiprocessing
        step = (len(items) + 4 * jobs - 1) // (4 * jobs)
        ranges = [(i, min(i + step, len(items))) for i in range(0, len(items), step)]
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for _ in pool.imap_unordered(_write_range, ranges):
                pass
    finally:
        _JOB = None


def split_items(images, n, h, w, prefix):
    """[(id, pixels)] of the first n images, ids prefix + 5-digit number from 1."""
    size = h * w
    return [("%s%05d" % (prefix, i + 1), images[i * size:(i + 1) * size]) for i in range(n)]


def limit(value, available, name, path):
    if value is None:
        return available
    if value > available:
        raise DataError("%s: --%s %d exceeds its %d images" % (path, name, value, available))
    return value


def convert(src, out, train_limit, test_limit, jobs):
    """Writes the competition folder out; returns (n_train, n_test)."""
    tr_img, tr_lab, tr_n, h, w = read_split(src, "train")
    te_img, te_lab, te_n, th, tw = read_split(src, "t10k")
    if (th, tw) != (h, w):
        raise DataError("%s: t10k images are %dx%d, train images %dx%d" % (src, tw, th, w, h))
    tr_n = limit(train_limit, tr_n, "train-limit", os.path.join(src, "train-images-idx3-ubyte.gz"))
    te_n = limit(test_limit, te_n, "test-limit", os.path.join(src, "t10k-images-idx3-ubyte.gz"))
    train = split_items(tr_img, tr_n, h, w, "tr")
    test = split_items(te_img, te_n, h, w, "te")
    write_pngs(os.path.join(out, "train"), train, w, h, jobs)
    write_pngs(os.path.join(out, "test"), test, w, h, jobs)
    write_csv(os.path.join(out, "train.csv"), ["id", "label"],
              [(ident, CLASSES[tr_lab[i]]) for i, (ident, _) in enumerate(train)])
    write_csv(os.path.join(out, "test.csv"), ["id"], [(ident,) for ident, _ in test])
    write_csv(os.path.join(out, "sample_submission.csv"), ["id", "label"],
              [(ident, CLASSES[0]) for ident, _ in test])
    write_csv(os.path.join(out, "test_labels.csv"), ["id", "label"],
              [(ident, CLASSES[te_lab[i]]) for i, (ident, _) in enumerate(test)])
    return tr_n, te_n


def positive(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1, not %s" % s)
    return v


def main(argv):
    ap = argparse.ArgumentParser(description="Fashion-MNIST as a Kaggle image competition folder.")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--train-limit", type=positive, help="keep the first N train images")
    ap.add_argument("--test-limit", type=positive, help="keep the first N test images")
    ap.add_argument("--src", default=SRC, help="folder of the idx .gz files (default %(default)s)")
    ap.add_argument("--jobs", type=positive, default=os.cpu_count() or 1,
                    help="processes writing PNGs (default: CPUs)")
    a = ap.parse_args(argv)
    try:
        os.makedirs(a.out, exist_ok=True)
        convert(a.src, a.out, a.train_limit, a.test_limit, a.jobs)
    except (DataError, OSError) as e:
        print("fmnist_to_kaggle.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
