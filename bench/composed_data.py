"""Generation times of the data sets composed from MNIST's files (cluttered MNIST, two-digit MNIST): reading MNIST
alone (the baseline, measured in the same run) and the whole setup of each module, which reads MNIST and composes
every split. Nothing is cached: this is what each training run pays at its start.

    python bench/composed_data.py --data-dir ../shared/data
"""

import argparse
import statistics
import time

from draw_exp.data import ClutteredMNISTDataModule, MNISTDataModule, TwoDigitMNISTDataModule


def median_seconds(make, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        make().setup()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="folder holding MNIST/raw/")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = {"data_dir": args.data_dir, "download": False, "num_workers": 0}
    modules = {
        "mnist (read only, baseline)": lambda: MNISTDataModule(**settings),
        "cluttered_mnist (100x100, 70,000 images)": lambda: ClutteredMNISTDataModule(**settings),
        "two_digit_mnist (60x60, 70,000 images)": lambda: TwoDigitMNISTDataModule(**settings),
    }
    baseline = None
    for name, make in modules.items():
        seconds = median_seconds(make, args.repeats)
        baseline = baseline or seconds
        print(f"{name:<42} {seconds:6.2f} s   {seconds / baseline:5.1f}x the read alone")


if __name__ == "__main__":
    main()
