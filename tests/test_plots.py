"""The figures of `python -m nanorlhf.report --png DIR` and of the studies, drawn from fake output
folders: each figure's axes hold the data they should (read through matplotlib's objects), and
each PNG is written at the figure's size."""
import json
import math
import os
import random

import numpy as np
import pytest

from nanorlhf import plots

matplotlib = pytest.importorskip("matplotlib")


def fake_out(root, ppo_runs=("ppo", "ppo_noptx", "ppo_beta0.02"), gold=True):
    """metrics.json / curve.json shaped like the scripts' own, with made-up numbers."""
    rng = random.Random(0)
    os.makedirs(root / "sft")
    os.makedirs(root / "rm")
    (root / "sft/metrics.json").write_text(json.dumps({"losses": {
        "pretrain": [4 * math.exp(-i / 80) + 0.9 + rng.gauss(0, 0.05) for i in range(300)],
        "sft": [2 * math.exp(-i / 40) + 0.5 + rng.gauss(0, 0.05) for i in range(120)]}}))
    (root / "rm/metrics.json").write_text(json.dumps({"losses": [0.69 - 0.2 * (1 - math.exp(-i / 30)) + rng.gauss(0, 0.03)
                                                                 for i in range(90)]}))
    for j, name in enumerate(ppo_runs):
        os.makedirs(root / name)
        curve = []
        for it in range(1, 61):
            kl = it * (0.05 + 0.1 * j) + rng.gauss(0, 0.05)
            curve.append(dict(iteration=it, episodes=64 * it, beta=[0.1, 0.1, 0.02][j % 3], kl=kl,
                              rm_score=0.3 * math.sqrt(max(kl, 0)) + rng.gauss(0, 0.05),
                              gold_score=(0.5 + 0.1 * kl - 0.02 * kl * kl + rng.gauss(0, 0.05)) if gold else float("nan"),
                              entropy=2 - 0.01 * it, ptx_loss=0.0 if name == "ppo_noptx" else 1.2 + rng.gauss(0, 0.02),
                              clipfrac=0.05 + rng.gauss(0, 0.01), pg_loss=0.0, vf_loss=0.1, approx_kl=0.01, truncated=0.0))
        (root / name / "curve.json").write_text(json.dumps(curve))


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plots draw, by file name, read back through matplotlib's objects (not the PNG)."""
    drawn, save = {}, plots._save

    def capture(fig, path):
        drawn[os.path.basename(path)] = fig
        return save(fig, path)
    monkeypatch.setattr(plots, "_save", capture)
    return drawn


def check_png(path, fig):
    """The file is a PNG of the figure's size in pixels."""
    img = matplotlib.image.imread(path)
    assert img.shape[:2] == (round(fig.get_figheight() * 110), round(fig.get_figwidth() * 110)), img.shape


def lines(ax):
    """(x, y) of every line on an axes, as float arrays."""
    return [(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)) for line in ax.get_lines()]


def curves(root, names):
    return {n: json.load(open(root / n / "curve.json")) for n in names}


def test_report_png_writes_three_figures(tmp_path, figures):
    fake_out(tmp_path / "out")
    written = plots.write_pngs(str(tmp_path / "png"), root=str(tmp_path / "out"))
    assert [os.path.basename(p) for p in written] == ["overoptimization.png", "ppo_curves.png", "losses.png"]
    for p in written:
        check_png(p, figures[os.path.basename(p)])
    names = ("ppo", "ppo_beta0.02", "ppo_noptx")
    assert plots.ppo_folders(str(tmp_path / "out")) == [str(tmp_path / "out" / n) for n in names]
    runs = curves(tmp_path / "out", names)

    # over-optimization: per run, the raw points (score against KL) and their moving average (window 8)
    rm_ax, gold_ax = figures["overoptimization.png"].axes
    for ax, key in ((rm_ax, "rm_score"), (gold_ax, "gold_score")):
        got = lines(ax)
        assert len(got) == 2 * len(names)
        for i, n in enumerate(names):
            kl, y = [c["kl"] for c in runs[n]], [c[key] for c in runs[n]]
            (px, py), (sx, sy) = got[2 * i], got[2 * i + 1]
            np.testing.assert_allclose(px, kl)
            np.testing.assert_allclose(py, y)
            np.testing.assert_allclose(sx, plots.smooth(kl, 8))
            np.testing.assert_allclose(sy, plots.smooth(y, 8))
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ppo (beta 0.1)", "ppo_beta0.02 (beta 0.02)",
                                                                      "ppo_noptx (beta 0.1)"]

    # PPO curves: each panel its key per iteration; plain PPO has no ptx line
    panels = dict(zip(["rm_score", "gold_score", "kl", "entropy", "ptx_loss", "clipfrac"], figures["ppo_curves.png"].axes))
    for key, ax in panels.items():
        shown = [n for n in names if not (key == "ptx_loss" and n == "ppo_noptx")]
        got = lines(ax)
        assert len(got) == 2 * len(shown), key
        for i, n in enumerate(shown):
            np.testing.assert_allclose(got[2 * i][0], range(1, 61))
            np.testing.assert_allclose(got[2 * i][1], [c[key] for c in runs[n]])

    # losses: pretraining, SFT and RM, each its raw curve per step
    sft, rm = (json.load(open(tmp_path / "out" / n / "metrics.json"))["losses"] for n in ("sft", "rm"))
    for ax, y in zip(figures["losses.png"].axes, (sft["pretrain"], sft["sft"], rm)):
        (x, raw), _ = lines(ax)
        np.testing.assert_allclose(x, range(1, len(y) + 1))
        np.testing.assert_allclose(raw, y)


def test_user_data_without_gold_or_ppo_still_draws(tmp_path, figures):
    """Runs on a user's data have NaN gold scores; a folder with no PPO run yet gets the loss figure only."""
    fake_out(tmp_path / "out", ppo_runs=("ppo",), gold=False)
    for p in plots.write_pngs(str(tmp_path / "png"), root=str(tmp_path / "out")):
        check_png(p, figures[os.path.basename(p)])
    rm_ax, gold_ax = figures["overoptimization.png"].axes
    assert len(lines(rm_ax)) == 2 and lines(gold_ax) == []
    assert [t.get_text() for t in gold_ax.texts] == ["not measured in these runs"]
    os.remove(tmp_path / "out/ppo/curve.json")
    assert [os.path.basename(p) for p in plots.write_pngs(str(tmp_path / "png2"), root=str(tmp_path / "out"))] == \
        ["losses.png"]


def test_smooth_is_a_trailing_mean():
    y = [1.0, 2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(plots.smooth(y, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(plots.smooth(y, 1), y)


def test_askell_figures_draw(tmp_path, figures):
    """plots.objectives (accuracy and best-of-16 by size and objective) and plots.pmp_curve (accuracy
    against N with and without PMP, PMP alone as a line), from rows shaped like the studies' own."""
    matplotlib.use("Agg")
    objectives = ["ranked", "binary", "imitation", "base LM likelihood (control)"]
    rows = [{"objective": obj, "n_params": n, "labeler_accuracy": 0.6 + 0.01 * i + 0.02 * (n > 2e6),
             "gold_accuracy": 0.65 + 0.01 * i, "best_of_16": (0.4 + 0.05 * i, (0.35, 0.45))}
            for i, obj in enumerate(objectives) for n in (4.5e6, 1.1e6)]  # sizes out of order: drawn sorted
    check_png(plots.objectives(rows, str(tmp_path / "askell.png")), figures["askell.png"])
    for ax, key in zip(figures["askell.png"].axes, ("labeler_accuracy", "gold_accuracy", "best_of_16")):
        got = lines(ax)
        assert len(got) == len(objectives)
        for (x, y), obj in zip(got, objectives):
            rs = sorted((r for r in rows if r["objective"] == obj), key=lambda r: r["n_params"])
            np.testing.assert_allclose(x, [1.1e6, 4.5e6])
            np.testing.assert_allclose(y, [r[key][0] if key == "best_of_16" else r[key] for r in rs])
        assert ax.get_xscale() == "log"
    assert [line.get_linestyle() for line in figures["askell.png"].axes[0].get_lines()] == ["-", "-", "-", "--"]

    table = {0: {"pmp": [(0.58, 0.0), (0.6, 0.0)], "base": None}}
    for j, n in enumerate((100, 300, 1000, 4080)):
        table[n] = {"pmp": [(0.6 + 0.02 * j, 0.01), (0.62 + 0.02 * j, 0.01)],
                    "base": [(0.57 + 0.02 * j, 0.02), (0.59 + 0.03 * j, 0.02)]}
    check_png(plots.pmp_curve(table, str(tmp_path / "pmp.png")), figures["pmp.png"])
    for i, ax in enumerate(figures["pmp.png"].axes):
        pmp, base = (c.lines[0] for c in ax.containers)  # the errorbar lines, PMP first
        np.testing.assert_allclose(np.asarray(pmp.get_xdata(), float), [100, 300, 1000, 4080])
        np.testing.assert_allclose(np.asarray(pmp.get_ydata(), float), [table[n]["pmp"][i][0] for n in (100, 300, 1000, 4080)])
        np.testing.assert_allclose(np.asarray(base.get_ydata(), float), [table[n]["base"][i][0] for n in (100, 300, 1000, 4080)])
        assert [tuple(map(float, line.get_ydata())) for line in ax.get_lines() if line.get_linestyle() == ":"] == \
            [(table[0]["pmp"][i][0],) * 2]  # PMP alone, across the panel


def test_rm_scaling_figure_draws_the_curve_and_its_yardsticks(tmp_path, figures):
    """plots.rm_scaling: accuracies by ranked prompts beside the agreement, the Bayes ceiling and the
    base LM control; best-of-16 and PPO-ptx gold with the seeds' mean (and sd as the error bar)."""
    matplotlib.use("Agg")
    rows = [{"ranked": k, "labeler_acc": 0.6 + i / 100, "gold_acc": 0.7 + i / 50, "bon1_gold": 0.2,
             "bon16_gold": 0.35 + i / 100, "gold": [0.25 + i / 100] if i < 2 else [0.3, 0.4],
             "greedy_gold": [0.5] if i < 2 else [0.55, 0.65]} for i, k in enumerate((1400, 4100, 12500))]
    res = {"rows": rows, "ceiling": {"labeler_agreement": 0.74, "bayes_ceiling": 0.77, "base_lm": [0.55, 0.66]}}
    check_png(plots.rm_scaling(res, str(tmp_path / "rm_scaling.png")), figures["rm_scaling.png"])
    acc, gold = figures["rm_scaling.png"].axes
    got = lines(acc)
    np.testing.assert_allclose(got[0][0], [1400, 4100, 12500])
    np.testing.assert_allclose(got[0][1], [0.6, 0.61, 0.62])
    np.testing.assert_allclose(got[1][1], [0.7, 0.72, 0.74])
    assert [float(y[0]) for _, y in got[2:]] == [0.74, 0.77, 0.66]  # agreement, ceiling, base LM vs gold
    ppo, greedy = (c for c in gold.containers[1:3])
    np.testing.assert_allclose(np.asarray(ppo.lines[0].get_ydata(), float), [0.25, 0.26, 0.35])
    np.testing.assert_allclose(np.asarray(greedy.lines[0].get_ydata(), float), [0.5, 0.5, 0.6])
    assert acc.get_xscale() == gold.get_xscale() == "log"


def test_sizes_figure_draws_each_methods_t1_win_rate_by_parameters(tmp_path, figures):
    """plots.sizes (InstructGPT Figure 1): a panel per test set, a line per method through its T=1 win
    rates in order of parameters (rows given out of order; greedy rows ignored), CI error bars, one
    labelled tick per size on a log axis."""
    matplotlib.use("Agg")
    sizes = {"0.3M": 297408, "4.5M": 4538624, "1.1M": 1088000}
    rows = [dict(set=s, method=m, decoding=d, n_params=n, win=w, win_ci95=[w - 0.02, w + 0.03])
            for s in ("test", "heldout") for m in ("GPT", "PPO-ptx") for d in ("T=1", "greedy")
            for n in sizes.values()
            for w in [round((0.1 if m == "GPT" else 0.3) + n / 1e7 + (0.05 if s == "heldout" else 0)
                            + (0.2 if d == "greedy" else 0), 4)]]
    check_png(plots.sizes(rows, str(tmp_path / "sizes.png")), figures["sizes.png"])
    axes = figures["sizes.png"].axes
    assert [ax.get_title().split()[0] for ax in axes] == ["test", "heldout"]
    x = sorted(sizes.values())
    for ax, shift in zip(axes, (0, 0.05)):
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.3M", "1.1M", "4.5M"]
        for c, base in zip(ax.containers, (0.1, 0.3)):
            xs, ys = (np.asarray(v, float) for v in c.lines[0].get_data())
            np.testing.assert_allclose(xs, x)
            np.testing.assert_allclose(ys, [base + n / 1e7 + shift for n in x], atol=1e-4)
            segs = c.lines[2][0].get_segments()  # the error bars: win - 0.02 to win + 0.03
            np.testing.assert_allclose([(s[0][1] - y, s[1][1] - y) for s, y in zip(segs, ys)], [(-0.02, 0.03)] * 3, atol=1e-6)
