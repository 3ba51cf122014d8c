"""Load times of binarized MNIST: the first load (parse the text, write the cache) and later loads (the cache),
against a plain text parser (np.loadtxt) on the validation file, measured in the same run.

    python bench/load_binarized_mnist.py --data-dir ../shared/data
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from draw_exp.data import BinarizedMNISTDataModule


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="folder holding BinarizedMNIST/")
    parser.add_argument("--repeats", type=int, default=5, help="later loads to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache_dir:  # a fresh cache: the first load really parses

        def load():
            return BinarizedMNISTDataModule(data_dir=args.data_dir, cache_dir=cache_dir, download=False).load_splits()

        splits, first = timed(load)
        later = sorted(timed(load)[1] for _ in range(args.repeats))
    valid = Path(args.data_dir) / "BinarizedMNIST" / "binarized_mnist_valid.amat"
    baseline, baseline_s = timed(lambda: np.loadtxt(valid, dtype=np.uint8))
    assert (baseline == splits["val"].view(-1, 784).numpy() // 255).all()
    images = sum(len(v) for v in splits.values())
    baseline_all = baseline_s * images / len(baseline)
    print(f"images: {images} ({', '.join(f'{k} {len(v)}' for k, v in splits.items())})")
    print(f"first load (md5 check, parse, write cache): {first:.3f} s")
    print(f"later load (cache), median of {args.repeats}: {later[len(later) // 2]:.4f} s")
    print(
        f"baseline np.loadtxt: {baseline_s:.2f} s for the {len(baseline)} validation images, "
        f"{baseline_all:.1f} s scaled to all {images}"
    )
    print(
        f"speed-up vs baseline: first load {baseline_all / first:.1f}x, "
        f"later load {baseline_all / later[len(later) // 2]:.0f}x"
    )


if __name__ == "__main__":
    main()
