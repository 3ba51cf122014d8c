"""Learning curves of runs from their CSV logs: a validation metric against epochs and against wall time.

    python -m draw_exp.curves OUT.png RUN_FOLDER[=LABEL] ... [--steps-per-epoch N] [--metric val/error] [--no-paper]

Reads ``<run folder>/csv/version_*/metrics.csv`` (``logger=csv``), where ``time/elapsed_s`` is logged beside
each validation metric (callbacks.elapsed_time). The metric is ``val/nll_bound`` (DRAW, with the paper's 80.97
nats drawn) unless ``--metric`` names another, e.g. ``val/error`` for the classifier. The paper's lines are its
binarized-MNIST and cluttered-MNIST figures, drawn only where every run was on that data set (the ``data`` choice in
the run folder's ``.hydra/hydra.yaml``; a folder without it is taken to be); ``--no-paper`` leaves them out always.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

# metric: (the paper's figures, drawn as lines; the axis label)
PAPER = {
    "val/nll_bound": (
        {"paper, attention: 80.97": 80.97, "paper, no attention: 87.40": 87.40},
        "validation NLL bound (nats per image)",
    ),
    "val/error": ({"paper, T=4: 4.18%": 4.18, "paper, T=8: 3.36%": 3.36}, "validation error (%)"),
}
# metric: the data sets (the `data` config group's options) the paper's figures for it were measured on
PAPER_DATA = {"val/nll_bound": {"binarized_mnist", "mnist"}, "val/error": {"cluttered_mnist"}}


def data_choice(run_folder: str | Path) -> str | None:
    """The ``data=`` option a run was made with, from Hydra's record in the run folder (None: no record)."""
    record = Path(run_folder) / ".hydra" / "hydra.yaml"
    if not record.is_file():
        return None
    from omegaconf import OmegaConf

    return OmegaConf.select(OmegaConf.load(record), "hydra.runtime.choices.data")


def paper_applies(run_folders: list[str | Path], metric: str) -> bool:
    """Whether the paper's lines for ``metric`` belong on a plot of these runs: every run on the paper's data set."""
    choices = {data_choice(folder) for folder in run_folders} - {None}
    return choices <= PAPER_DATA.get(metric, set())


def validation_curve(run_folder: str | Path, metric: str = "val/nll_bound") -> list[dict[str, float]]:
    """One row per validation: ``step``, ``epoch``, ``value`` (of ``metric``) and, where logged, ``elapsed_s``;
    resumed runs' files (version_0, version_1, ...) are read in order."""
    rows = []
    files = sorted(Path(run_folder).glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not files:
        raise FileNotFoundError(f"{run_folder}: no csv/version_*/metrics.csv (was the run's logger=csv?)")
    for path in files:
        for row in csv.DictReader(path.open()):
            if row.get(metric):
                rows.append(
                    {
                        "step": int(row["step"]) + 1,
                        "epoch": int(row["epoch"]) + 1,
                        "value": float(row[metric]),
                        "elapsed_s": float(row["time/elapsed_s"]) if row.get("time/elapsed_s") else None,
                    }
                )
    return rows


def plot(
    curves: dict[str, list[dict]],
    out: str | Path,
    steps_per_epoch: int | None = None,
    reference: dict[str, float] | None = None,
    ylabel: str = PAPER["val/nll_bound"][1],
) -> Path:
    """Two panels, a validation metric against epochs (or steps / steps_per_epoch) and against wall time (hours);
    ``reference``: horizontal lines, e.g. the paper's figures."""
    import matplotlib.pyplot as plt

    fig = figure(curves, steps_per_epoch, reference, ylabel)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def figure(
    curves: dict[str, list[dict]],
    steps_per_epoch: int | None = None,
    reference: dict[str, float] | None = None,
    ylabel: str = PAPER["val/nll_bound"][1],
):
    """The matplotlib figure :func:`plot` saves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for label, rows in curves.items():
        x = [r["step"] / steps_per_epoch for r in rows] if steps_per_epoch else [r["epoch"] for r in rows]
        (line,) = by_epoch.plot(x, [r["value"] for r in rows], label=label)
        timed = [r for r in rows if r["elapsed_s"] is not None]
        if timed:  # in the curve's own colour: a run without wall times must not shift the others' colours
            by_time.plot([r["elapsed_s"] / 3600 for r in timed], [r["value"] for r in timed], color=line.get_color())
    for name, value in (reference or {}).items():
        for ax in (by_epoch, by_time):
            ax.axhline(value, color="grey", linestyle="--", linewidth=1)
        by_epoch.annotate(
            name,
            (0, value),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
            color="grey",
        )
    by_epoch.set_xlabel("epochs")
    by_time.set_xlabel("wall time (hours)")
    by_epoch.set_ylabel(ylabel)
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3)
    # under the panels: inside them the legend covered curves or the paper's labels, whichever sat in its corner
    handles, labels = by_epoch.get_legend_handles_labels()
    columns = 1 if max(map(len, labels), default=0) > 60 else 2
    legend_rows = -(-len(labels) // columns)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, min(0.05 * legend_rows, 0.4), 1, 1))
    return fig


def main(argv: list[str]) -> None:
    """``--steps-per-epoch N`` puts validations at step / N on the epoch axis (a run stopped mid-epoch and
    resumed counts its epochs from the stop); ``--no-paper`` draws no paper lines, whatever the runs' data."""
    no_paper = "--no-paper" in argv
    argv = [a for a in argv if a != "--no-paper"]
    options = {"--steps-per-epoch": None, "--metric": "val/nll_bound"}
    for option in options:
        if option in argv:
            i = argv.index(option)
            options[option] = argv[i + 1]
            argv = argv[:i] + argv[i + 2 :]
    if len(argv) < 2:
        raise SystemExit(__doc__)
    metric, steps_per_epoch = options["--metric"], options["--steps-per-epoch"]
    curves, folders = {}, []
    for spec in argv[1:]:
        folder, _, label = spec.partition("=")
        curves[label or Path(folder).name] = validation_curve(folder, metric)
        folders.append(folder)
    reference, ylabel = PAPER.get(metric, ({}, metric))
    if no_paper or not paper_applies(folders, metric):
        reference = {}
    print(plot(curves, argv[0], steps_per_epoch and int(steps_per_epoch), reference, ylabel))


if __name__ == "__main__":
    main(sys.argv[1:])
