#!/usr/bin/python3
"""report.py OUT - bench/seg/run.sh's results as markdown: seconds per epoch,
images/s, validation Dice (plain and hflip TTA) of PyTorch and kpipe, the
ratio kpipe/PyTorch, and the machine (CPU, cores, load before and after)."""
import json
import os
import platform
import sys


def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def read(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return f.read().strip()
    except OSError:
        return "?"


def main():
    out = sys.argv[1]
    t, k = load(os.path.join(out, "torch.json")), load(os.path.join(out, "kpipe.json"))
    print("# UNet segmentation benchmark (%s)\n" % read(out, "date"))
    print("| | s / epoch | images/s | val Dice | hflip TTA Dice |")
    print("|---|---:|---:|---:|---:|")
    for name, r, dice, tta in (("PyTorch 1.13", t, "valid_dice", "valid_dice_hflip_tta"),
                               ("kpipe unet", k, "val_dice", "val_dice_hflip_tta")):
        if r:
            print("| %s | %.1f | %.1f | %.4f | %.4f |" % (
                name, r.get("seconds_per_epoch", float("nan")), r.get("images_per_s", float("nan")),
                r.get(dice, float("nan")), r.get(tta, float("nan"))))
    if t and k and t.get("seconds_per_epoch"):
        print("\nRatio kpipe / PyTorch seconds per epoch: **%.2f** (target <= 1.0); "
              "Dice difference kpipe - PyTorch: %+.4f (target within 0.01)" % (
                  k["seconds_per_epoch"] / t["seconds_per_epoch"],
                  k.get("val_dice", 0) - t.get("valid_dice", 0)))
    print("\nMachine: %s, %d cores, Linux %s; load average before %s, after %s" % (
        cpu(), os.cpu_count() or 0, platform.release(), read(out, "loadavg_before"),
        read(out, "loadavg_after")))


main()
