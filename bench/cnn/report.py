#!/usr/bin/python3
"""report.py - bench/cnn/run.sh's results as markdown.

    /usr/bin/python3 bench/cnn/report.py OUT > OUT/results.md

Reads what run.sh left in OUT: torch.json and kpipe.json (one JSON object
each, the keys torch_cnn.py writes), sgemm.jsonl (one line per kernel
choice, from sgemm_peak.c), conv_bench.txt (conv_bench.c's markdown output,
included as it is), convert.json (the data conversion), date and
loadavg_before.  A missing file makes its rows say "not run".  Writes the
CNN table (seconds per epoch, images/s, test accuracy, the kpipe / PyTorch
ratio against the issue's targets), the sgemm table, the conversion, and
the machine (CPU model, cores, memory, kernel, OpenBLAS, PyTorch, load
averages).  Standard library only (PyTorch's version is read from
torch.json, OpenBLAS's from sgemm.jsonl or by loading the library).
"""
import ctypes
import json
import os
import platform
import sys

# Forward FLOPs of one 28 x 28 image through the network (multiply-adds x 2):
# the four convolutions, then dense 3136 -> 128 -> 10.  Training costs about
# three times the forward pass (forward, data gradient, weight gradient).
CONV = [(28, 1, 32), (28, 32, 32), (14, 32, 64), (14, 64, 64)]   # (side, c_in, c_out)
FORWARD_FLOP = sum(2 * s * s * ci * co * 9 for s, ci, co in CONV) + 2 * (3136 * 128 + 128 * 10)
TRAIN_FLOP = 3 * FORWARD_FLOP
TIME_TARGET = 1.0          # kpipe / PyTorch seconds per epoch, at most
ACCURACY_TARGET = 0.005    # |kpipe - PyTorch| test accuracy, at most


def load_json(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_jsonl(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def read_text(path, default="?"):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def fmt(v, spec, missing="not run"):
    return missing if v is None else format(v, spec)


def cnn_row(name, r):
    if r is None:
        return "| %s | not run | | | | | |" % name
    tta = "-"
    if "test_accuracy_hflip_alone" in r:
        tta = "%.4f / %.4f" % (r["test_accuracy_hflip_alone"], r["test_accuracy_hflip_mean"])
    other = r.get("other_cores_per_epoch")
    return "| %s | %.2f | %s | %.4f | %s | %s | %s |" % (
        name, r["seconds_per_epoch"], format(round(r["images_per_s"]), ","), r["test_accuracy"], tta,
        " ".join("%.1f" % s for s in r["epoch_seconds"]),
        "%.2f" % (sum(other) / len(other)) if other else "?")


def verdicts(torch, kpipe):
    """Lines comparing kpipe with PyTorch against the issue's targets."""
    if torch is None or kpipe is None:
        return ["- targets: undecided (%s not run)" % ("PyTorch" if torch is None else "kpipe")]
    ratio = kpipe["seconds_per_epoch"] / torch["seconds_per_epoch"]
    gap = kpipe["test_accuracy"] - torch["test_accuracy"]
    return [
        "- time: kpipe / PyTorch = %.2f (target <= %.1f): %s"
        % (ratio, TIME_TARGET, "met" if ratio <= TIME_TARGET else "NOT met"),
        "- accuracy: kpipe - PyTorch = %+.2f points (target within %.1f): %s"
        % (100 * gap, 100 * ACCURACY_TARGET, "met" if abs(gap) <= ACCURACY_TARGET else "NOT met"),
    ]


def cnn_section(torch, kpipe):
    ref = torch or kpipe
    lines = ["### Fashion-MNIST CNN: kpipe against PyTorch", ""]
    if ref:
        lines += ["%s train and %s test images (28 x 28 gray PNGs), %d epoch(s), batch %d, Adam %g, "
                  "%d threads each; the network of bench/cnn/torch_cnn.py (%.1f MFLOP per training "
                  "image).  Seconds per epoch: the training loop's wall time, mean over the epochs; "
                  "test accuracy after the last epoch; hflip TTA: the last model on flipped test "
                  "images alone / averaged with the plain predictions; other CPU: cores other "
                  "processes kept busy during the epochs (near 0: a quiet machine)."
                  % (format(ref["n_train"], ","), format(ref["n_test"], ","), ref["epochs"],
                     ref["batch"], ref.get("lr", 1e-3), ref["threads"], TRAIN_FLOP / 1e6), ""]
    lines += ["| | seconds / epoch | images / s | test accuracy | hflip TTA alone / mean "
              "| each epoch (s) | other CPU |",
              "|---|---|---|---|---|---|---|",
              cnn_row("PyTorch %s" % (torch or {}).get("torch", ""), torch),
              cnn_row("kpipe", kpipe), ""]
    lines += verdicts(torch, kpipe)
    for name, r in (("PyTorch", torch), ("kpipe", kpipe)):
        if r:
            lines.append("- %s's effective throughput: %.1f GFLOP/s (%s images/s x %.1f MFLOP)"
                         % (name, r["images_per_s"] * TRAIN_FLOP / 1e9,
                            format(round(r["images_per_s"]), ","), TRAIN_FLOP / 1e6))
    if torch and torch.get("malloc") == "keep":
        lines.append("- PyTorch ran with glibc keeping freed memory (torch_cnn.py --malloc keep)")
    return lines + [""]


def sgemm_section(rows):
    lines = ["### OpenBLAS sgemm peak (2048 x 2048 x 2048, row-major)", ""]
    if not rows:
        return lines + ["not run", ""]
    lines += ["| kernel choice | OPENBLAS_CORETYPE | OpenBLAS kernels | threads | GFLOP/s best "
              "| GFLOP/s median |", "|---|---|---|---|---|---|"]
    what = {"env": "the environment as it is", "unset": "OPENBLAS_CORETYPE unset",
            "auto": "kpipe's choice (pipeline/blas_lazy.c)"}
    for r in rows:
        lines.append("| %s | %s | %s | %d | %.1f | %.1f |" % (
            what.get(r["core_request"], r["core_request"]), r["OPENBLAS_CORETYPE"], r["corename"],
            r["threads"], r["gflops_best"], r["gflops_median"]))
    return lines + [""]


def conv_section(out):
    text = read_text(os.path.join(out, "conv_bench.txt"), "")
    lines = ["### kpipe's conv2d kernels against the sgemm peak (bench/cnn/conv_bench.c)", ""]
    return lines + [text or "not run", ""]


def convert_section(c):
    lines = ["### Data conversion (configs/fmnist_to_kaggle.py)", ""]
    if not c:
        return lines + ["not run (or reused from an earlier run)", ""]
    return lines + ["%s PNG files and 4 CSVs in %.1f s (%d processes); %.1f MB of data, %.1f MB on "
                    "disk (%s)" % (format(c["pngs"], ","), c["seconds"], c["jobs"], c["bytes"] / 1e6,
                                   c["disk_bytes"] / 1e6, c["args"]), ""]


def cpu_model():
    for line in read_text("/proc/cpuinfo", "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def openblas_config(sgemm):
    if sgemm:
        return "%s (the build; its kernels per choice: the sgemm table)" % sgemm[0]["config"]
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        return lib.openblas_get_config().decode()
    except (OSError, AttributeError):
        return "?"


def machine_section(out, torch, kpipe, sgemm):
    mem = "?"
    for line in read_text("/proc/meminfo", "").splitlines():
        if line.startswith("MemTotal:"):
            mem = "%.0f GiB" % (int(line.split()[1]) / 1048576)
    lines = ["### Machine", "",
             "- date: %s" % read_text(os.path.join(out, "date")),
             "- machine: %d cores, %s, %s; kernel %s %s" % (
                 os.cpu_count() or 0, cpu_model(), mem, platform.system(), platform.release()),
             "- OpenBLAS: %s" % openblas_config(sgemm),
             "- OPENBLAS_CORETYPE in the environment: %s" % os.environ.get("OPENBLAS_CORETYPE", "unset")]
    if torch:
        lines.append("- PyTorch %s (Debian python3-torch, oneDNN convolutions), %d threads, "
                     "malloc %s" % (torch["torch"], torch["threads"], torch.get("malloc", "default")))
    if kpipe and kpipe.get("kpipe"):
        lines.append("- kpipe: %s" % kpipe["kpipe"])
    lines.append("- load average before the runs: %s" % read_text(os.path.join(out, "loadavg_before")))
    if torch:
        lines.append("- load average before / after PyTorch's epochs: %s / %s"
                     % (torch["load_average_before"], torch["load_average_after"]))
    lines.append("- load average at the report: %s" % " ".join(read_text("/proc/loadavg").split()[:3]))
    lines.append("- reproduce: `sh bench/cnn/run.sh`")
    return lines + [""]


def main(argv):
    if len(argv) != 1:
        print("usage: report.py OUT", file=sys.stderr)
        return 2
    out = argv[0]
    torch, kpipe = load_json(out, "torch.json"), load_json(out, "kpipe.json")
    sgemm = load_jsonl(out, "sgemm.jsonl")
    lines = cnn_section(torch, kpipe) + sgemm_section(sgemm) + conv_section(out)
    lines += convert_section(load_json(out, "convert.json"))
    lines += machine_section(out, torch, kpipe, sgemm)
    print("\n".join(lines).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
