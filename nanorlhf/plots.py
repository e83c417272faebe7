"""
The figures, drawn from the output folders of the three scripts (matplotlib, an optional extra:
pip install -e '.[plot]'). `python -m nanorlhf.report --png DIR` writes:

- overoptimization.png  RM (proxy) score and gold score against KL(pi || pi_SFT) over PPO training,
                        one line per PPO folder (Gao et al. 2022): the RM score keeps rising with
                        KL while the gold score peaks and falls when the RM is over-optimized;
- ppo_curves.png        reward, KL, entropy, ptx loss and clip fraction per PPO iteration;
- losses.png            pretraining, SFT and RM training loss per optimizer step;

and `python -m nanorlhf.experiments.overoptimization` draws frontier() from its own points and fits,
`python -m nanorlhf.experiments.sizes` draws sizes() (InstructGPT's Figure 1).

Per-iteration points are noisy (64 episodes each): each line is a trailing moving average (over
fewer points for a short run, where a long window would lag), drawn over the raw points.
"""
import glob
import json
import math
import os

import numpy as np


def smooth(y, window):
    """Moving average over `window` points (fewer at the start), NaN-free input assumed."""
    y = np.asarray(y, dtype=float)
    c = np.cumsum(np.insert(y, 0, 0.0))
    lo = np.maximum(0, np.arange(1, len(y) + 1) - window)
    return (c[1:] - c[lo]) / (np.arange(1, len(y) + 1) - lo)


def ppo_folders(root="out"):
    """Every PPO run under `root` (out/ppo, out/ppo_noptx, out/ppo_beta0.02, ...): folders with curve.json."""
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(root, "ppo*", "curve.json")))


def _read(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _label(folder, curve):
    return f"{os.path.basename(folder)} (beta {curve[0]['beta']:g})"


def overoptimization(folders, path, window=8):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for i, folder in enumerate(folders):
        curve = _read(os.path.join(folder, "curve.json"))
        w = max(1, min(window, len(curve) // 5))  # a short run: a shorter window, or the mean lags
        kl = smooth([c["kl"] for c in curve], w)
        for ax, key in zip(axes, ("rm_score", "gold_score")):
            y = [c[key] for c in curve]
            if any(v is None or math.isnan(v) for v in y):
                continue  # no gold labeler for this run's prompts (user data)
            ax.plot([c["kl"] for c in curve], y, ".", color=f"C{i}", alpha=0.25, markersize=4)
            ax.plot(kl, smooth(y, w), "-", color=f"C{i}", lw=2, label=_label(folder, curve))
    _score_panels(fig, axes, "KL(pi || pi_SFT), nats per sequence",
                  "Over-optimization: score against KL over PPO training (moving averages over iterations)")
    return _save(fig, path)


def frontier(series, path):
    """Gao et al.'s frontier (nanorlhf.experiments.overoptimization): RM and gold score, as changes
    from the start policy, against d = sqrt(KL), points and fitted forms. series: [{"label", "d",
    "rm", "gold": the points; "fit_d", "fit_rm", "fit_gold": the fitted curves}], one per method."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for i, s in enumerate(series):
        for ax, key in zip(axes, ("rm", "gold")):
            ax.plot(s["d"], s[key], "o", color=f"C{i}", markersize=4, label=s["label"])
            ax.plot(s["fit_d"], s[f"fit_{key}"], "-", color=f"C{i}", lw=1.5)
    for ax in axes:
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_ylabel("change from SFT at T=1")
    _score_panels(fig, axes, "d = sqrt(KL(pi || pi_SFT)), sqrt(nats)",
                  "Over-optimization frontier: points measured, lines Gao et al.'s forms fitted")
    return _save(fig, path)


def ppo_curves(folders, path, window=5):
    import matplotlib.pyplot as plt
    panels = [("rm_score", "RM score (reward)"), ("gold_score", "gold score"), ("kl", "KL, nats per sequence"),
              ("entropy", "entropy, nats per token"), ("ptx_loss", "ptx (pretraining) loss"),
              ("clipfrac", "clip fraction")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for i, folder in enumerate(folders):
        curve = _read(os.path.join(folder, "curve.json"))
        it = [c["iteration"] for c in curve]
        for ax, (key, _) in zip(axes.flat, panels):
            y = [c.get(key, float("nan")) for c in curve]
            if any(v is None or math.isnan(v) for v in y) or (key == "ptx_loss" and not any(y)):
                continue  # no gold labeler, or plain PPO (ptx 0)
            ax.plot(it, y, color=f"C{i}", alpha=0.25, lw=1)
            ax.plot(it, smooth(y, max(1, min(window, len(curve) // 5))), color=f"C{i}", lw=2, label=_label(folder, curve))
    for ax, (_, title) in zip(axes.flat, panels):
        ax.set_title(title)
        ax.set_xlabel("PPO iteration")
        ax.grid(alpha=0.3)
        _legend_or_note(ax, legend=ax is axes.flat[0])
    fig.suptitle("PPO training curves")
    return _save(fig, path)


def loss_curves(sft_metrics, rm_metrics, path, window=20):
    import matplotlib.pyplot as plt
    losses = (sft_metrics or {}).get("losses", {})
    panels = [("pretraining (step 0)", losses.get("pretrain")), ("SFT (step 1), response tokens", losses.get("sft")),
              ("reward model (step 2), ranking loss", (rm_metrics or {}).get("losses"))]
    panels = [(t, y) for t, y in panels if y]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.8), squeeze=False)
    for ax, (title, y) in zip(axes.flat, panels):
        ax.plot(range(1, len(y) + 1), y, color="C0", alpha=0.3, lw=1)
        ax.plot(range(1, len(y) + 1), smooth(y, max(1, min(window, len(y) // 10))), color="C0", lw=2)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.suptitle("Training losses")
    return _save(fig, path)


def _score_panels(fig, axes, xlabel, title):
    for ax, name in zip(axes, ("RM (proxy) score", "gold score (the world's labeler)")):
        ax.set_xlabel(xlabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        _legend_or_note(ax)
    fig.suptitle(title)


def _legend_or_note(ax, legend=True):
    if ax.lines:
        if legend:
            ax.legend(fontsize=8)
    else:  # e.g. the gold score of a user's prompts, or the ptx loss of plain PPO
        ax.text(0.5, 0.5, "not measured in these runs", ha="center", va="center", transform=ax.transAxes)


def _save(fig, path):
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_pngs(png_dir, root="out", folders=()):
    """All three figures from the folders under `root` (plus any extra PPO `folders`) into png_dir;
    a figure without data (no PPO run yet, say) is skipped. Returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    os.makedirs(png_dir, exist_ok=True)
    ppo = sorted(set(ppo_folders(root)) | {f for f in folders if os.path.exists(os.path.join(f, "curve.json"))})
    sft, rm = _read(os.path.join(root, "sft", "metrics.json")), _read(os.path.join(root, "rm", "metrics.json"))
    written = []
    if ppo:
        written.append(overoptimization(ppo, os.path.join(png_dir, "overoptimization.png")))
        written.append(ppo_curves(ppo, os.path.join(png_dir, "ppo_curves.png")))
    if any(((sft or {}).get("losses") or {}).values()) or (rm or {}).get("losses"):
        written.append(loss_curves(sft, rm, os.path.join(png_dir, "losses.png")))
    return written


def objectives(rows, path):
    """Askell et al. 2021's comparison (nanorlhf.experiments.askell): held-out accuracy against the
    labeler and the gold order, and best-of-16 gold score, by model size; one line per objective,
    the likelihood controls dashed. rows: the study's rows (objective, n_params, accuracies, best_of_16)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    by_objective = {}
    for r in sorted(rows, key=lambda r: r["n_params"]):
        by_objective.setdefault(r["objective"], []).append(r)
    for i, (objective, rs) in enumerate(by_objective.items()):
        style = "--o" if "control" in objective else "-o"
        x = [r["n_params"] for r in rs]
        for ax, y in zip(axes, ([r["labeler_accuracy"] for r in rs], [r["gold_accuracy"] for r in rs],
                                [r["best_of_16"][0] for r in rs])):
            ax.plot(x, y, style, color=f"C{i}", label=objective)
    _log_x_panels(axes, ("accuracy vs the noisy labeler", "accuracy vs the gold order", "best-of-16 gold score"),
                  "parameters")
    fig.suptitle("Ranked preference modeling vs binary discrimination vs imitation (held-out comparisons; test prompts)")
    return _save(fig, path)


def pmp_curve(table, path):
    """Held-out accuracy against the number of labeler comparisons, with and without preference-model
    pretraining (nanorlhf.experiments.pmp). table: {N: {"pmp" | "base": [(mean, sd) vs labeler,
    (mean, sd) vs gold] or None}}; N = 0 (PMP alone) is drawn as a dotted line."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, i in zip(axes, (0, 1)):
        for arm, color, label in (("pmp", "C0", "PMP on forum votes, then N"), ("base", "C1", "no PMP")):
            ns = sorted(n for n in table if n > 0 and table[n][arm])
            ax.errorbar(ns, [table[n][arm][i][0] for n in ns], yerr=[table[n][arm][i][1] for n in ns], fmt="-o",
                        color=color, capsize=3, label=label)
        if table.get(0, {}).get("pmp"):
            ax.axhline(table[0]["pmp"][i][0], color="C0", ls=":", label="PMP alone (N = 0)")
    _log_x_panels(axes, ("accuracy vs the noisy labeler", "accuracy vs the gold order"), "labeler comparisons N")
    fig.suptitle("Preference-model pretraining: mean ± sd over seeds")
    return _save(fig, path)


def _log_x_panels(axes, titles, xlabel, ticks=None):
    """Log x axes with titles and a grid; ticks: label exactly these x values (no minor labels)."""
    from matplotlib.ticker import NullFormatter
    for ax, title in zip(axes, titles):
        ax.set_xscale("log")
        if ticks is not None:
            ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)


def sizes(rows, path):
    """InstructGPT's Figure 1 (nanorlhf.experiments.sizes): win rate against the reference SFT at T=1
    by parameters (log axis), one line per method, with 95% CIs; a panel per test set."""
    import matplotlib.pyplot as plt
    sets = list(dict.fromkeys(r["set"] for r in rows))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.2), squeeze=False)
    for ax, s in zip(axes[0], sets):
        methods = list(dict.fromkeys(r["method"] for r in rows))
        for i, m in enumerate(methods):
            rs = sorted((r for r in rows if r["set"] == s and r["method"] == m and r["decoding"] == "T=1"),
                        key=lambda r: r["n_params"])
            y = [r["win"] for r in rs]
            err = [[v - r["win_ci95"][0] for v, r in zip(y, rs)], [r["win_ci95"][1] - v for v, r in zip(y, rs)]]
            ax.errorbar([r["n_params"] for r in rs], y, yerr=err, fmt="-o", color=f"C{i}", capsize=3, label=m)
        ax.axhline(0.5, color="gray", ls=":", lw=1)
    _log_x_panels(axes[0], [f"{s} set: win rate vs the reference SFT (T=1)" for s in sets], "parameters")
    params = sorted({r["n_params"] for r in rows})
    for ax in axes[0]:  # one tick per size, labelled as the study names it
        ax.set_xticks(params, [f"{n / 1e6:.1f}M" for n in params], minor=False)
        ax.set_xticks([], minor=True)
    fig.suptitle("Gold-labeler preference by model size (InstructGPT Figure 1)")
    return _save(fig, path)


def rm_scaling(res, path):
    """The RM's scaling curve (nanorlhf.experiments.rm_scaling): by ranked prompts (log axis), its
    pair accuracy against one labeler and against gold beside the agreement, the Bayes ceiling and
    the base LM's likelihood; and the gold score of best-of-16 and PPO-ptx (sd over seeds)."""
    import matplotlib.pyplot as plt
    rows, c = res["rows"], res["ceiling"]
    x = [r["ranked"] for r in rows]
    fig, (acc, gold) = plt.subplots(1, 2, figsize=(11, 4.2))
    acc.plot(x, [r["labeler_acc"] for r in rows], "-o", color="C0", label="RM vs one labeler")
    acc.plot(x, [r["gold_acc"] for r in rows], "-o", color="C1", label="RM vs gold order")
    for y, style, label in ((c["labeler_agreement"], "C0--", "inter-labeler agreement"),
                            (c["bayes_ceiling"], "C0:", "Bayes ceiling (vs labeler)"),
                            (c["base_lm"][1], "C1:", "base LM likelihood vs gold")):
        acc.axhline(y, color=style[:2], ls=style[2:], lw=1, label=label)
    for i, (k, label) in enumerate((("bon16_gold", "best-of-16"), ("gold", "PPO-ptx T=1"), ("greedy_gold", "PPO-ptx greedy"))):
        ys = [np.atleast_1d(r[k]) for r in rows]
        gold.errorbar(x, [y.mean() for y in ys], yerr=[y.std(ddof=1) if len(y) > 1 else 0 for y in ys], fmt="-o",
                      color=f"C{i + 2}", capsize=3, label=label)
    gold.axhline(rows[0]["bon1_gold"], color="gray", ls=":", lw=1, label="SFT sample")
    _log_x_panels([acc, gold], ["held-out pair accuracy", "gold score of the policy (test prompts)"], "ranked prompts", x)
    gold.legend(fontsize=8)
    fig.suptitle("The reward model's scaling curve against the gold labeler")
    return _save(fig, path)
