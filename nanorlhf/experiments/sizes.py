"""
InstructGPT's Figure 1 against the gold labeler: by model size, the win rate against one SFT model
of the base GPT, the GPT prompted with a few-shot prefix, SFT, PPO, PPO-ptx and the GPT with the
prefix distilled into its weights.

    python -m nanorlhf.experiments.sizes --lock FILE   # 0.3M 1.1M 4.5M from an empty --root (README: wall time)

Sizes: 0.3M (3 layers x 64), 1.1M (the default: out/world0, the seed-0 run of nanorlhf.experiments.seeds,
made here if absent), 4.5M (5 layers x 256, askell's larger trunk: out/x4/sft/base.pt is reused where
it and its metrics.json exist) and, by --sizes, 2.2M (4 layers x 192; left out of the default for the
75-minute budget). Every size is pretrained alike (train_sft.py: 1,000 steps of 32 x 128 tokens of the
seed-0 corpus), then runs the default pipeline, train_sft.py, train_ppo.py --ptx-coef 0 (PPO),
train_ppo.py (PPO-ptx), into --root/{size0.3M,world0,size4.5M}, with ONE reward model, as in the paper
(its 6B RM trained the PPO models of every size): the 1.1M run's train_rm.py, which also initializes
each size's value function. A stage whose metrics.json exists is skipped; --lock FILE is held around
each stage and each size's sampling.

Measured on the world's test set (held out by body) and its held-out combinations, T=1 and greedy:
gold (mean, 95% CI; per family) and the win rate against the 1.1M SFT at the same decoding (ties half,
Wilson 95% CI: evaluate.win_rate); the alignment tax, the loss on held-out pretraining text
(train_sft.py's base_pretrain_loss, train_ppo.py's pretrain_loss and sft_pretrain_loss); the five
answers computed from these (answers(); the first also head to head).

GPT prompted: the same base model after a few-shot prefix in the world's own format (<|prompt|> x
<|response|> y <|endoftext|>, as the corpus's forums write exchanges): an ideal exchange per task
family from the SFT prompts, as many as fit in the 128-token pretraining window beside the longest
training or validation prompt and ROOM tokens of answer (PPO's limit; up to 48 are sampled, as for
every row). Calibrated: of --prefixes random candidates, the best by greedy gold on validation
prompts (prefix.json); test prompts are only checked to fit.

GPT distilled: context distillation (Askell et al. section 3; distill()): the base model fine-tuned,
with no prefix, to match the prompted model's next-token distribution on its own samples for the
SFT prompts; it is then sampled without the prefix.

Held-out labelers: nanorlhf.experiments.labelers.
Writes --root/sizes.{json,md} and, with matplotlib, sizes.png (plots.sizes).
"""
import argparse
import copy
import itertools
import json
import os
import random
import time

import torch

from nanorlhf import plots, world
from nanorlhf.batching import encode_example, encode_prompt, heldout_stream, pretrain_loss, response_batch
from nanorlhf.checkpoint import load_checkpoint, save_checkpoint
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import gold_report, mean_gold, sample, win_rate
from nanorlhf.experiments.askell import REPO, fmt, run_stage, write_results
from nanorlhf.experiments.seeds import held
from nanorlhf.losses import distill_kl
from nanorlhf.report import FAMILIES, RUNS, load, stage_command
from nanorlhf.run import autocast
from nanorlhf.tokenizer import encode

SHAPE = lambda n_layer, n_embd, n_head: ["--n-layer", str(n_layer), "--n-embd", str(n_embd), "--n-head", str(n_head)]
SIZES = {"0.3M": ("size0.3M", SHAPE(3, 64, 4)), "1.1M": ("world0", []), "2.2M": ("size2.2M", SHAPE(4, 192, 6)),
         "4.5M": ("size4.5M", SHAPE(5, 256, 8))}
DEFAULT_SIZES = {False: ["0.3M", "1.1M", "4.5M"], True: ["toy", "quick", "wide"]}  # 2.2M by --sizes (budget)
QUICK_SIZES = {"toy": ("toy", SHAPE(1, 32, 2)), "quick": ("world0", []), "wide": ("wide", SHAPE(2, 96, 4))}
DEFAULT = {False: "1.1M", True: "quick"}  # the reference SFT's size
ASKELL_BASE = os.path.join(REPO, "out", "x4", "sft")  # askell.SIZES["4x"]: reused for the 4.5M size
METHODS = {"GPT": "sft/base.pt", "GPT prompted": "sft/base.pt", "SFT": "sft/model.pt", "PPO": "ppo_noptx/model.pt",
           "PPO-ptx": "ppo/model.pt", "GPT distilled": "distill/model.pt"}
DECODINGS = {"T=1": 1.0, "greedy": 0.0}
SETS = ("test", "heldout")
ROOM = 32  # tokens left for the response after prefix + prompt: train_ppo.py's --max-new-tokens


def pipeline(run, name, shape, quick, lock, ref_run):
    """The default pipeline in folder `run`, skipping stages whose metrics.json exists. One reward
    model for every size, as in the paper (its 6B RM trained every PPO model): the reference size's
    (ref_run/rm), which also initializes each size's value function; the other sizes train none. A
    size other than the reference's has its scripts' own final evaluations on 200 test prompts
    (unused here)."""
    for stage in RUNS:
        if stage == "rm" and run != ref_run:
            continue
        short_eval = bool(shape) and not quick
        extra = ["--seed", "0"] + ["--quick"] * quick + ["--n-eval", "200"] * short_eval
        if stage == "sft":
            reuse = name == "4.5M" and load(ASKELL_BASE) and os.path.exists(os.path.join(ASKELL_BASE, "base.pt"))
            extra += ["--init", os.path.join(ASKELL_BASE, "base.pt")] if reuse else shape + ["--block-size", "128"] * quick
        cmd = stage_command(run, stage, extra, rm=os.path.join(ref_run, "rm", "model.pt"))
        run_stage(cmd, lock, os.path.join(run, stage, "metrics.json"))


def pretraining(run):
    """Parameters, pretraining tokens, window and held-out loss of the base model: from the
    metrics.json of the train_sft.py run that pretrained it (the --init's folder if one was given)."""
    m = load(os.path.join(run, "sft"))
    if m["args"].get("init"):
        m = load(os.path.dirname(m["args"]["init"]))
    a = m["args"]
    return {"n_params": m["n_params"], "tokens": a["pretrain_steps"] * a["batch_size"] * a["block_size"],
            "window": a["block_size"], "loss": m["base_pretrain_loss"]}


def exchange(prompt):
    fam, info = world.parse_prompt(prompt)
    return world.format_example(prompt, fam.ideal(info))


def candidate_prefixes(prompts, enc, budget, n, seed=0):
    """n few-shot prefixes of ideal exchanges for `prompts` (the training side) within `budget` tokens:
    families in a random order, one random exchange each among those that leave room for the shortest
    of every family still to come (or, where none does, that fit: that family may be left out)."""
    rng, by_family = random.Random(seed), {}
    for p in prompts:
        by_family.setdefault(world.parse_prompt(p)[0].name, []).append((p, len(encode(enc, exchange(p)))))
    shortest = {f: min(k for _, k in xs) for f, xs in by_family.items()}
    out = []
    for _ in range(n):
        text, used, order = "", 0, rng.sample(sorted(by_family), len(by_family))
        for i, fam in enumerate(order):
            later = sum(shortest[f] for f in order[i + 1:])
            fits = [x for x in by_family[fam] if used + x[1] + later <= budget] or \
                [x for x in by_family[fam] if used + x[1] <= budget]
            if fits:
                p, k = rng.choice(fits)
                text, used = text + exchange(p), used + k
        out.append(text)
    return out


def prompted(prefix, prompt):
    """The prompt text whose encode_prompt is the prefix followed by <|prompt|> prompt <|response|>."""
    return prefix[len(world.PROMPT):] + world.PROMPT + prompt if prefix else prompt


def choose_prefix(model, enc, w, window, n):
    """The few-shot prefix: of n candidates from the SFT prompts fitting the budget (window - ROOM -
    the longest training or validation prompt), the best by greedy gold on the validation prompts.
    Reads no test prompt."""
    longest = max(len(encode_prompt(enc, p)) for s in ("sft", "rm", "rl", "val") for p in w[f"{s}_prompts"])
    budget = window - ROOM - longest
    cands = candidate_prefixes(w["sft_prompts"], enc, budget, n)
    val = w["val_prompts"][:200]
    golds = [mean_gold(val, sample(model, enc, [prompted(c, p) for p in val], 0.0)[0]) for c in cands]
    best = max(range(n), key=lambda i: golds[i])
    return {"prefix": cands[best], "n_tokens": len(encode(enc, cands[best])), "budget": budget, "val_gold": golds,
            "n_exchanges": cands[best].count(world.EOT), "chosen": best}


def prefix_of(run, w, n_prefixes, lock):
    """The prefix record of `run`'s base model (choose_prefix; cached in prefix.json), checked to
    leave ROOM tokens after every test prompt."""
    path = os.path.join(run, "prefix.json")
    if os.path.exists(path):
        return json.load(open(path))
    with held(lock):
        window = pretraining(run)["window"]
        base, enc, _ = load_checkpoint(os.path.join(run, METHODS["GPT"]), kind="policy")
        pre = choose_prefix(base.eval(), enc, w, window, n_prefixes)
        for s in SETS:  # the test prompts are only checked to fit, never used in the choice
            longest = max(len(encode_prompt(enc, prompted(pre["prefix"], p))) for p in w[f"{s}_prompts"])
            if longest + ROOM > window:
                raise UserError(f"{run}: the prefix and a {s} prompt take {longest} of the {window}-token window")
        json.dump(pre, open(path, "w"), indent=1)
    return pre


def distill(run, w, prefix, steps, lock, batch_size=32, lr=5e-4, seed=0):
    """Context distillation (Askell et al. 2021, section 3) into run/distill/model.pt: the base model,
    without the prefix C, fine-tuned by AdamW (SFT's lr, constant) to minimise distill_kl against
    itself with C, at every response position (end-of-text included) of its prompted T=1 samples
    (at most ROOM tokens) on the SFT prompts. Calibrated: steps, batch_size, lr. Measured: that KL on
    200 validation prompts' samples before and after, and the held-out pretraining loss."""
    out = os.path.join(run, "distill")
    if load(out):
        return
    with held(lock):
        t0, device = time.time(), torch.device("cuda" if torch.cuda.is_available() else "cpu")
        teacher, enc, _ = load_checkpoint(os.path.join(run, METHODS["GPT"]), kind="policy")
        teacher = teacher.to(device).eval()
        student = copy.deepcopy(teacher).train()
        c = torch.tensor(encode(enc, prefix), device=device)  # (P,) the context C

        def examples(prompts, sample_seed):  # (ids, n_prompt) of <|prompt|> x <|response|> y <|endoftext|>
            ys = sample(teacher, enc, [prompted(prefix, p) for p in prompts], 1.0, ROOM, seed=sample_seed)[0]
            return [(ids[:n + ROOM + 1], n) for ids, n in (encode_example(enc, p, y) for p, y in zip(prompts, ys))]

        def kl(batch):
            ids, mask = response_batch(batch, enc.eot_token, device)  # (B, T), (B, T-1) response targets
            x = ids[:, :-1]
            with autocast(device):
                with torch.no_grad():  # the same positions behind C: (B, P + T-1, V) -> (B, T-1, V)
                    t_logits = teacher(torch.cat([c.expand(len(x), -1), x], 1))[:, len(c):]
                return distill_kl(student(x).float(), t_logits.float(), mask)

        def val_kl():
            student.eval()
            with torch.no_grad():
                v = sum(kl(val[i:i + 50]).item() * len(val[i:i + 50]) for i in range(0, len(val), 50)) / len(val)
            student.train()
            return v

        train, val = examples(w["sft_prompts"], 2), examples(w["val_prompts"][:200], 3)
        rng, opt = random.Random(seed), torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
        before = val_kl()
        for step in range(steps):
            loss = kl(rng.sample(train, min(batch_size, len(train))))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 50 == 0:
                print(f"[distill] {run} step {step + 1}/{steps} kl {loss.item():.4f}", flush=True)
        metrics = {"args": {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed},
                   "n_prompts": len(train), "prefix_tokens": len(c), "val_kl_before": before, "val_kl_after": val_kl(),
                   "pretrain_loss": pretrain_loss(student, heldout_stream(enc, w["pretrain"])[1], device),
                   "wall_seconds": time.time() - t0}
        save_checkpoint(os.path.join(out, "model.pt"), student, enc, "policy")
        json.dump(metrics, open(os.path.join(out, "metrics.json"), "w"), indent=1)
        print(f"[distill] {run}: validation KL {before:.4f} -> {metrics['val_kl_after']:.4f} nats/token, "
              f"{metrics['wall_seconds']:.0f} s", flush=True)


def responses(run, w, prefix, lock):
    """{method: {decoding: {set: [response]}}} of every checkpoint of `run`, cached in responses.json
    (a method missing there is sampled and added)."""
    path = os.path.join(run, "responses.json")
    out = json.load(open(path)) if os.path.exists(path) else {}
    missing = [m for m in METHODS if m not in out]
    if not missing:
        return out
    with held(lock):
        for method in missing:
            model, enc, _ = load_checkpoint(os.path.join(run, METHODS[method]), kind="policy")
            fix = prefix if method == "GPT prompted" else ""
            out[method] = {d: {s: sample(model.eval(), enc, [prompted(fix, p) for p in w[f"{s}_prompts"]], t, seed=1)[0]
                               for s in SETS} for d, t in DECODINGS.items()}
        json.dump(out, open(path, "w"))
    return out


def rows_of(w, resp, info, ref):
    """One row per size, method, decoding and test set: gold (CI, per family) and the win rate against
    resp[ref]["SFT"] at the same decoding."""
    rows = []
    for z, m, d, s in itertools.product(resp, METHODS, DECODINGS, SETS):
        ps, ys = w[f"{s}_prompts"], resp[z][m][d][s]
        g, wr = gold_report(ps, ys), win_rate(ps, ys, resp[ref]["SFT"][d][s])
        rows.append({"size": z, "n_params": info[z]["n_params"], "method": m, "decoding": d, "set": s,
                     "win": wr["win_rate"], "win_ci95": wr["win_rate_ci95"], "tie": wr["tie_rate"],
                     "gold": g["gold_score"], "gold_ci95": g["gold_score_ci95"],
                     **{f"{k}_{f}": g.get(f"{k}_{f}") for k in ("gold", "success") for f in FAMILIES}})
    return rows


def taxes(run):
    """Held-out pretraining loss per method (the prompted GPT is the GPT)."""
    ppo, noptx = load(os.path.join(run, "ppo")), load(os.path.join(run, "ppo_noptx"))
    gpt = pretraining(run)["loss"]
    return {"GPT": gpt, "GPT prompted": gpt, "SFT": ppo["sft_pretrain_loss"], "PPO": noptx["pretrain_loss"],
            "PPO-ptx": ppo["pretrain_loss"], "GPT distilled": load(os.path.join(run, "distill"))["pretrain_loss"]}


def answers(rows, tax, test_set="test", dec="T=1"):
    """The five answers, from the rows (win rates against the reference SFT; gold) and the losses."""
    r = {(x["size"], x["method"]): x for x in rows if x["set"] == test_set and x["decoding"] == dec}
    sizes = sorted({s for s, _ in r}, key=lambda s: r[s, "SFT"]["n_params"])
    small, large = sizes[0], sizes[-1]
    diff = lambda a, b, k: r[a][k] - r[b][k]
    gain = lambda m, base: {s: {k: diff((s, m), (s, base), k) for k in ("win", "gold")} for s in sizes}
    return {"set": test_set, "decoding": dec, "sizes": sizes,
            "small_ppo_ptx_vs_large": {m: {k: diff((small, "PPO-ptx"), (large, m), k) for k in ("win", "gold")}
                                       for m in ("GPT", "GPT prompted")},
            "prompting_gain": gain("GPT prompted", "GPT"), "ppo_ptx_gain": gain("PPO-ptx", "SFT"),
            "distillation_gain": gain("GPT distilled", "GPT"),
            "alignment_tax": {s: {m: tax[s][m] - tax[s]["GPT"] for m in ("SFT", "PPO", "PPO-ptx", "GPT distilled")}
                              for s in sizes}}


def table(rows, info, tax, ref):
    sizes = sorted(info, key=lambda s: info[s]["n_params"])
    get = {(x["size"], x["method"], x["decoding"], x["set"]): x for x in rows}
    lines = ["| size | params | pretraining tokens | window |", "|---|---|---|---|"]
    lines += [f"| {s} | {info[s]['n_params']:,} | {info[s]['tokens']:,} | {info[s]['window']} |" for s in sizes]
    for s in SETS:
        lines += ["", f"**{s} set**: win rate vs the {ref} SFT at the same decoding [95% CI] / gold [95% CI]", "",
                  "| method | decoding | " + " | ".join(sizes) + " |", "|---|---" + "|---" * len(sizes) + "|"]
        for m in METHODS:
            for d in DECODINGS:
                cells = [f"{fmt(get[z, m, d, s]['win'], get[z, m, d, s]['win_ci95'])} / "
                         f"{fmt(get[z, m, d, s]['gold'], get[z, m, d, s]['gold_ci95'])}" for z in sizes]
                lines.append(f"| {m} | {d} | " + " | ".join(cells) + " |")
        lines += ["", f"| {s}, T=1: gold by family | " + " | ".join(FAMILIES) + " |", "|---" * (len(FAMILIES) + 1) + "|"]
        lines += [f"| {z} {m} | " + " | ".join(f"{get[z, m, 'T=1', s][f'gold_{f}']:.2f}" for f in FAMILIES) + " |"
                  for z in sizes for m in METHODS]
        lines += ["", f"| {s}: success rate by family, T=1 / greedy | " + " | ".join(FAMILIES) + " |",
                  "|---" * (len(FAMILIES) + 1) + "|"]
        lines += [f"| {z} {m} | " + " | ".join(" / ".join(f"{get[z, m, d, s][f'success_{f}']:.3f}" for d in DECODINGS)
                                               for f in FAMILIES) + " |" for z in sizes for m in METHODS]
    lines += ["", "| alignment tax: held-out pretraining loss | " + " | ".join(sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{tax[z][m]:.3f}" for z in sizes) + " |" for m in METHODS if m != "GPT prompted"]
    return "\n".join(lines)


def answer_text(a, head):
    sig = lambda x: f"{x:+.3f}"
    small, large = a["sizes"][0], a["sizes"][-1]
    lines = [f"Answers ({a['set']} set, {a['decoding']}; win rates vs the reference SFT):"]
    for m, d in a["small_ppo_ptx_vs_large"].items():
        lines.append(f"1. {small} PPO-ptx minus {large} {m}: win {sig(d['win'])}, gold {sig(d['gold'])}; head to head "
                     f"{small} PPO-ptx wins {fmt(head[m]['win_rate'], head[m]['win_rate_ci95'])}")
    for i, (key, what) in enumerate((("prompting_gain", "prompted minus plain GPT"), ("ppo_ptx_gain", "PPO-ptx minus SFT")), 2):
        lines.append(f"{i}. {what}: " + "; ".join(f"{s} win {sig(v['win'])} gold {sig(v['gold'])}" for s, v in a[key].items()))
    lines.append("4. alignment tax (loss minus the GPT's): " + "; ".join(
        f"{s} " + ", ".join(f"{m} {sig(v)}" for m, v in t.items()) for s, t in a["alignment_tax"].items()))
    lines.append("5. context distillation, distilled minus plain GPT (no prefix): " + "; ".join(
        f"{s} win {sig(v['win'])} gold {sig(v['gold'])}" for s, v in a["distillation_gain"].items()))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out", help="parent folder of the runs and of sizes.{json,md,png}")
    ap.add_argument("--sizes", nargs="+", help=f"sizes to run, of {list(SIZES)} (default: {' '.join(DEFAULT_SIZES[False])})")
    ap.add_argument("--prefixes", type=int, default=4, help="few-shot prefix candidates, chosen on validation")
    ap.add_argument("--distill-steps", type=int, help="context distillation's optimizer steps (default 300; --quick 10)")
    ap.add_argument("--quick", action="store_true", help="toy sizes and --quick stages: a smoke test")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    args = ap.parse_args(argv)
    table_of = QUICK_SIZES if args.quick else SIZES
    names = args.sizes or DEFAULT_SIZES[args.quick]
    ref = DEFAULT[args.quick]
    if ref not in names or any(n not in table_of for n in names):
        raise UserError(f"--sizes: choose from {list(table_of)}, including the reference {ref}")
    root = os.path.abspath(args.root)
    w = world.make_world(seed=0, scale=0.05 if args.quick else 1.0)
    runs = {n: os.path.join(root, table_of[n][0]) for n in names}
    for n in sorted(names, key=lambda n: n != ref):  # the reference first: its RM serves every size
        pipeline(runs[n], n, table_of[n][1], args.quick, args.lock, runs[ref])
    resp, prefixes = {}, {}
    for n in names:
        prefixes[n] = prefix_of(runs[n], w, args.prefixes, args.lock)
        distill(runs[n], w, prefixes[n]["prefix"], args.distill_steps or (10 if args.quick else 300), args.lock)
        resp[n] = responses(runs[n], w, prefixes[n]["prefix"], args.lock)
    info, tax = {n: pretraining(runs[n]) for n in names}, {n: taxes(runs[n]) for n in names}
    rows = rows_of(w, resp, info, ref)
    distilled = {n: load(os.path.join(runs[n], "distill")) for n in names}
    result = {"sizes": info, "reference": f"{ref} SFT", "prefixes": prefixes, "rows": rows, "alignment_tax": tax,
              "distillation": distilled}
    text = [f"# InstructGPT Figure 1 by model size, against the gold labeler (reference: the {ref} SFT)\n",
            table(rows, info, tax, ref), ""]
    for s in SETS:
        a = answers(rows, tax, s)  # and head to head: the smallest PPO-ptx against the largest GPT
        a["head_to_head"] = {m: win_rate(w[f"{s}_prompts"], resp[a["sizes"][0]]["PPO-ptx"]["T=1"][s],
                                         resp[a["sizes"][-1]][m]["T=1"][s]) for m in ("GPT", "GPT prompted")}
        result[f"answers_{s}"] = a
        text += [answer_text(a, a["head_to_head"]), ""]
    text.append("Few-shot prefixes (validation greedy gold of the candidates): " + "; ".join(
        f"{n} {p['n_exchanges']} exchanges, {p['n_tokens']} tokens of {p['budget']}, "
        + " ".join(f"{g:.3f}" for g in p["val_gold"]) for n, p in prefixes.items()))
    text.append("Context distillation (KL to the prompted model on 200 validation prompts' samples, nats per "
                "response token, before -> after): " + "; ".join(
                    f"{n} {d['val_kl_before']:.4f} -> {d['val_kl_after']:.4f} ({d['args']['steps']} steps, "
                    f"{d['wall_seconds']:.0f} s)" for n, d in distilled.items()))
    text = "\n".join(text)
    print(text)
    write_results(os.path.join(root, "sizes"), text, result, lambda path: plots.sizes(rows, path))


if __name__ == "__main__":
    exit_on_user_error(main)
