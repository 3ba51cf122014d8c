"""Learning curves from a run's CSV log, resumed runs included."""

from draw_exp import curves
from draw_exp.curves import plot, validation_curve


def write_metrics(folder, rows):
    folder.mkdir(parents=True)
    lines = ["epoch,step,train/loss_step,val/nll_bound,time/elapsed_s"] + [",".join(map(str, r)) for r in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_validation_curve_reads_every_version_in_order_and_the_plot_is_written(tmp_path):
    run = tmp_path / "run"
    write_metrics(run / "csv" / "version_0", [(0, 49, 200.0, "", ""), (0, 99, "", 150.0, 60.0)])
    write_metrics(run / "csv" / "version_1", [(1, 199, "", 120.0, 130.5)])  # the resumed part
    write_metrics(run / "csv" / "version_10", [(2, 299, "", 110.0, "")])  # sorted by number, not as text
    rows = validation_curve(run)
    assert [(r["step"], r["epoch"], r["value"], r["elapsed_s"]) for r in rows] == [
        (100, 1, 150.0, 60.0),
        (200, 2, 120.0, 130.5),
        (300, 3, 110.0, None),
    ]
    out = plot({"run": rows}, tmp_path / "curves.png", steps_per_epoch=100, reference={"paper": 80.97})
    assert out.stat().st_size > 10_000


def test_another_metric_is_read_by_name(tmp_path):
    run = tmp_path / "classifier"
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "metrics.csv").write_text(
        "epoch,step,val/error,val/nll_bound,time/elapsed_s\n0,549,81.8,,44.0\n1,1099,,,\n1,1099,75.2,,85.3\n"
    )
    rows = validation_curve(run, metric="val/error")
    assert [(r["epoch"], r["value"], r["elapsed_s"]) for r in rows] == [(1, 81.8, 44.0), (2, 75.2, 85.3)]
    assert validation_curve(run) == []  # no val/nll_bound in a classifier's log


def test_the_paper_lines_are_drawn_unless_no_paper_is_asked(tmp_path, monkeypatch):
    run = tmp_path / "run"  # no record of its data set: taken to be the paper's
    write_metrics(run / "csv" / "version_0", [(0, 99, "", 430.0, 60.0)])
    drawn = []
    monkeypatch.setattr(curves, "plot", lambda rows, out, steps, reference, ylabel: drawn.append(reference))
    curves.main([str(tmp_path / "a.png"), str(run)])
    curves.main([str(tmp_path / "b.png"), str(run), "--no-paper"])
    assert drawn == [curves.PAPER["val/nll_bound"][0], {}]


def write_data_choice(run, data):
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      data: {data}\n")


def test_the_paper_lines_follow_the_runs_data_sets(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(curves, "plot", lambda rows, out, steps, reference, ylabel: drawn.append(reference))
    runs = {}
    for name, data in [
        ("binarized", "binarized_mnist"),
        ("two_digit", "two_digit_mnist"),
        ("clutter", "cluttered_mnist"),
    ]:
        runs[name] = tmp_path / name
        write_metrics(runs[name] / "csv" / "version_0", [(0, 99, "", 100.0, 60.0)])
        write_data_choice(runs[name], data)
    curves.main([str(tmp_path / "a.png"), str(runs["binarized"])])
    curves.main([str(tmp_path / "b.png"), str(runs["two_digit"])])
    curves.main(
        [str(tmp_path / "c.png"), str(runs["binarized"]), str(runs["two_digit"])]
    )  # one run off the paper's data
    curves.main([str(tmp_path / "d.png"), str(runs["clutter"]), "--metric", "val/error"])
    curves.main([str(tmp_path / "e.png"), str(runs["binarized"]), "--metric", "val/error"])
    assert drawn == [curves.PAPER["val/nll_bound"][0], {}, {}, curves.PAPER["val/error"][0], {}]


def test_a_curve_has_one_colour_in_both_panels_even_after_a_curve_without_wall_times():
    import matplotlib.pyplot as plt

    untimed = [{"step": 100, "epoch": 1, "value": 150.0, "elapsed_s": None}]
    timed = [{"step": 100, "epoch": 1, "value": 140.0, "elapsed_s": 60.0}]
    fig = curves.figure({"old, another machine": untimed, "new": timed})
    by_epoch, by_time = fig.axes
    assert len(by_time.lines) == 1
    assert by_time.lines[0].get_color() == by_epoch.lines[1].get_color() != by_epoch.lines[0].get_color()
    plt.close(fig)


def test_the_legend_covers_neither_panel():
    """Inside a panel the legend hid curves or the paper's labels, whichever sat in its corner."""
    import matplotlib.pyplot as plt

    rows = [{"step": s, "epoch": s, "value": 4.5 - 0.01 * s, "elapsed_s": 30.0 * s} for s in range(1, 200)]
    labels = ["session 23: from the 3.44% model, 5e-5 halving every 50,000 steps, EMA 0.9998", "short", "third"]
    reference, ylabel = curves.PAPER["val/error"]
    fig = curves.figure(dict.fromkeys(labels, rows), reference=reference, ylabel=ylabel)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == labels
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_xlabel()
        assert not box.overlaps(ax.xaxis.label.get_window_extent(renderer)), ax.get_xlabel()
    plt.close(fig)
