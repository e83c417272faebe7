"""
Ahead-of-time compile check: every kernel variant the wrappers can launch, lowered for real
GPUs on a machine that has none.

    python -m kernels.compile                        # every target, kernel, dtype, head size
    python -m kernels.compile --targets 80 90 --json compile.json
    python -m kernels.compile --targets 80 --kernels attn_bwd --search   # a clean tile per unfit variant

The CPU interpreter checks the kernels' math but never lowers them, so it cannot see what a GPU
run would hit first: shared memory past the chip's limit (Triton refuses to launch: "out of
resources") and register spills (local memory traffic in the inner loop). Triton compiles with no
GPU present: `triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cap,
32))` runs the whole pipeline down to PTX and a cubin. For each variant this prints

    shared   dynamic shared memory of the compiled kernel (Triton's metadata), against the target's
             per-block opt-in limit; Triton checks exactly this number at launch
    regs     registers per thread, and spill stores/loads in bytes, from `ptxas -v` run on the
             kernel's PTX with the ptxas and flags Triton itself uses for that target (the wheel's
             CUDA 12.9 `ptxas` below sm_90, its CUDA 13 `ptxas-blackwell` from sm_90 on)

and exits with status 1 if any variant failed to compile, overflows shared memory, or spills
in fp16/bf16 (fp32 spills are reported, and marked, but fp32 is the slow path on any GPU).

What it does not show: time. A clean compile says the kernel launches and its loop stays in
registers; only a GPU says how fast it is.

Variants: each wrapper's launch settings come from the function the wrapper itself calls
(flash_attention.attention_tiles, logprobs._launch), so what is checked is what ships.
Pointers are compiled 16-byte aligned and integers unspecialized, as Triton specializes a launch
on torch tensors with a length T that is not a multiple of 16. The log-prob kernels are compiled
at their largest chunk (BLOCK_V = 4096, any V >= 2049 such as GPT-2's 50,257); smaller
vocabularies get smaller chunks.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# the interpreter replaces @triton.jit functions by Python ones that cannot be lowered
os.environ["TRITON_INTERPRET"] = "0"
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning
import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import importlib  # noqa: E402

# the modules, not the functions of the same name that kernels/__init__.py exports
fa = importlib.import_module("kernels.flash_attention")
lp = importlib.import_module("kernels.logprobs")

if not isinstance(fa._attn_fwd_kernel, triton.runtime.JITFunction):
    raise SystemExit("kernels was imported under TRITON_INTERPRET=1: run `python -m kernels.compile` in its own process")

# capability -> (GPUs, opt-in shared memory per block in bytes: CUDA C Programming Guide,
# "Technical Specifications per Compute Capability", maximum shared memory per thread block)
TARGETS = {
    80: ("A100, A30", 166_912),  # 163 KB
    86: ("RTX 30xx, A10, A40", 101_376),  # 99 KB
    89: ("RTX 40xx, L4, L40S", 101_376),  # 99 KB
    90: ("H100, H200", 232_448),  # 227 KB
    100: ("B200", 232_448),  # 227 KB
    120: ("RTX 50xx", 101_376),  # 99 KB
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HEAD_SIZES = (16, 32, 64, 128)


def variants(cap, dtypes=tuple(DTYPES), head_sizes=HEAD_SIZES, override=None):
    """(kernel name, dtype name, hs or None, jit fn, signature, constexprs, options) for one target;
    override: {"fwd"/"dkdv"/"dq": tile} in place of what attention_tiles returns (--search)."""
    for dn in dtypes:
        t = f"*{dn}"  # tensors in the input dtype (bf16 stays bf16 on a GPU)
        for hs in head_sizes:
            tiles = {**fa.attention_tiles((cap // 10, cap % 10), DTYPES[dn], hs), **(override or {})}
            qkv = {"Q": t, "K": t, "V": t}
            scalars = {"sm_scale": "fp32", "T": "i32"}
            for name, fn, sig in (
                ("attn_fwd", fa._attn_fwd_kernel, {**qkv, "O": t, "LSE": "*fp32", **scalars}),
                ("attn_bwd_dkdv", fa._attn_bwd_dkdv_kernel,
                 {**qkv, "DO": t, "LSE": "*fp32", "DELTA": "*fp32", "DK": t, "DV": t, **scalars}),
                ("attn_bwd_dq", fa._attn_bwd_dq_kernel,
                 {**qkv, "DO": t, "LSE": "*fp32", "DELTA": "*fp32", "DQ": t, **scalars}),
            ):
                tile = dict(tiles[name.split("_")[-1]])
                opts = {"num_warps": tile.pop("num_warps"), "num_stages": tile.pop("num_stages")}
                yield name, dn, hs, fn, sig, {"HS": hs, "CAUSAL": True, **tile}, opts
            sig = {"O": t, "DO": t, "DELTA": "*fp32", "n_rows": "i32"}
            yield "attn_bwd_pre", dn, hs, fa._attn_bwd_preprocess_kernel, sig, {"HS": hs, "BLOCK_M": fa.pre_block(hs)}, {}
        block_v = lp._launch(50257)  # the largest chunk: any V >= 2049
        row_opts = {"num_warps": block_v.pop("num_warps")}
        rows = {"stride": "i32", "V": "i32", "temperature": "fp32"}
        stats = {"STATS": "*fp32"}
        yield ("logprobs_fwd", dn, None, lp._logprobs_fwd_kernel,
               {"X": t, "TGT": "*i64", **stats, "LOGP": "*fp32", **rows}, block_v, row_opts)
        yield ("logprobs_bwd", dn, None, lp._logprobs_bwd_kernel,
               {"X": t, "TGT": "*i64", **stats, "DOUT": "*fp32", "DX": t, **rows}, block_v, row_opts)
        ek = {"X": t, "Y": t, "STATS_X": "*fp32", "STATS_Y": "*fp32", "OUT": "*fp32"}
        ek_rows = {"stride_x": "i32", "stride_y": "i32", "V": "i32", "temperature": "fp32"}
        for has_ref, what in ((False, "entropy"), (True, "kl")):
            yield (f"{what}_fwd", dn, None, lp._entropy_kl_fwd_kernel, {**ek, **ek_rows},
                   {"HAS_REF": has_ref, **block_v}, row_opts)
            yield (f"{what}_bwd", dn, None, lp._entropy_kl_bwd_kernel, {**ek, "DOUT": "*fp32", "DX": t, **ek_rows},
                   {"HAS_REF": has_ref, **block_v}, row_opts)


def ptxas_usage(ptx, cap, name):
    """(registers, spill store bytes, spill load bytes) of kernel `name` from `ptxas -v`."""
    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        # Triton's own command (backends/nvidia/compiler.py, make_cubin)
        cmd = [get_ptxas(cap).path, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch}", src,
               "-o", os.path.join(tmp, "k.o")]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    log = log[log.index(f"Compiling entry function '{name}'"):]
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    st, ld = (int(x) for x in re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log).groups())
    return regs, st, ld


def compile_one(cap, name, dn, hs, fn, sig, constexprs, opts):
    """One row of the report: the variant, its launch settings, shared memory, registers, spills."""
    limit = TARGETS[cap][1]
    row = dict(target=f"sm_{cap}", kernel=name, dtype=dn, hs=hs, limit=limit,
               tile={k: v for k, v in {**constexprs, **opts}.items() if k not in ("HS", "CAUSAL", "HAS_REF")})
    attrs = {(fn.arg_names.index(k),): [["tt.divisibility", 16]] for k, v in sig.items() if v.startswith("*")}
    sig = {**sig, **{k: "constexpr" for k in constexprs}}
    try:
        k = triton.compile(ASTSource(fn, sig, constexprs, attrs), target=GPUTarget("cuda", cap, 32), options=opts)
        row["shared"] = k.metadata.shared
        row["regs"], row["spill_stores"], row["spill_loads"] = ptxas_usage(k.asm["ptx"], cap, fn.__name__)
    except Exception as e:  # a compile error is a result of the report, not a crash of it
        row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
    row["problems"], row["status"] = problems(row), status(row)
    return row


def problems(row):
    """What makes a variant unfit to ship, the reasons the check fails on: "compile error",
    "smem over" (shared memory past the target's limit: Triton refuses the launch), "spill"
    (fp16/bf16 only; fp32 spills are reported by status() but do not fail)."""
    if "error" in row:
        return ["compile error"]
    out = []
    if row["shared"] > row["limit"]:
        out.append("smem over")
    if row["spill_stores"] + row["spill_loads"] > 0 and row["dtype"] != "fp32":
        out.append("spill")
    return out


def status(row):
    """The report's status column: ok, spill, smem over, smem over+spill, compile error, or
    fp32 spill (an fp32 variant that fits but spills: reported, not a failure)."""
    bad = problems(row)
    if bad:
        return "+".join(bad)
    return "fp32 spill" if row["spill_stores"] + row["spill_loads"] > 0 else "ok"


# --search: tiles to try when a kernel's setting is unfit, best first by one rule (no GPU to time
# them): keep 2+ pipeline stages if any tile allows it (FlashAttention-2 and Triton's tutorial
# pipeline their loads), then the largest tile (work per program), the fewest warps, the most stages.
SEARCH_TILES = ((64, 64), (32, 64), (64, 32), (32, 32), (16, 64), (16, 32), (16, 16))  # (BLOCK_M, BLOCK_N)


def search_order(dn):
    """Candidate (BLOCK_M, BLOCK_N, num_warps, num_stages), best first."""
    top = 2 if dn == "fp32" else 3
    for min_stages in (2, 1):  # the pass with 1 stage only tries what the first pass did not
        for bm, bn in SEARCH_TILES:
            for warps in (4, 8):
                for stages in range(top if min_stages == 2 else 1, min_stages - 1, -1):
                    yield bm, bn, warps, stages


def search(cap, dn, hs, kernel):
    """The first tile in search_order whose variant of an attention kernel compiles with shared
    memory within the limit and no spill at all, and its row; if none is clean (fp32), the fitting
    tile with the fewest spill bytes."""
    fallback = None
    for bm, bn, warps, stages in search_order(dn):
        tile = dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=warps, num_stages=stages)
        v = next(v for v in variants(cap, (dn,), (hs,), {kernel: tile}) if v[0].endswith(f"_{kernel}"))
        row = compile_one(cap, *v)
        if "error" in row or row["shared"] > row["limit"]:
            continue
        spill = row["spill_stores"] + row["spill_loads"]
        if spill == 0:
            return (bm, bn, warps, stages), row
        if fallback is None or spill < fallback[2]:
            fallback = ((bm, bn, warps, stages), row, spill)
    return fallback[:2] if fallback else (None, row)


def format_row(r):
    tile = r["tile"]
    tile_s = (f"{tile['BLOCK_M']}x{tile['BLOCK_N']}" if "BLOCK_N" in tile else
              str(tile.get("BLOCK_M", tile.get("BLOCK_V"))))
    tile_s += f" w{tile.get('num_warps', 4)} s{tile.get('num_stages', 3)}"
    head = f"{r['target']:7} {r['kernel']:14} {r['dtype']:5} {r['hs'] or '-':>4} {tile_s:15}"
    if "error" in r:
        return f"{head} {'-':>18} {'-':>5} {'-':>11}  {status(r):15} {r['error']}"
    spill = f"{r['spill_stores']}/{r['spill_loads']}"
    return f"{head} {r['shared']:>8,} / {r['limit']:>7,} {r['regs']:>5} {spill:>11}  {status(r)}"


HEADER = (f"{'target':7} {'kernel':14} {'dtype':5} {'hs':>4} {'tile':15} {'shared / limit (B)':>18} {'regs':>5} "
          f"{'spill st/ld':>11}  status")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=[",".join(map(str, TARGETS))],
                    help="compute capabilities, e.g. 80 90 (or 80,90)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="input dtypes: fp32,fp16,bf16")
    ap.add_argument("--head-sizes", default=",".join(map(str, HEAD_SIZES)), help="attention head sizes")
    ap.add_argument("--kernels", default="", help="only kernels whose name contains one of these, e.g. attn_bwd,kl")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    ap.add_argument("--search", action="store_true",
                    help="for each unfit attention variant, find the first clean tile in the search order")
    args = ap.parse_args(argv)
    caps = [int(c) for t in args.targets for c in t.split(",") if c]
    for c in caps:
        if c not in TARGETS:
            raise SystemExit(f"unknown target {c}: one of {', '.join(map(str, TARGETS))}")
    only = [k for k in args.kernels.split(",") if k]
    dtypes = args.dtypes.split(",")
    head_sizes = [int(h) for h in args.head_sizes.split(",")]
    t0, rows = time.time(), []
    print(HEADER)
    for cap in caps:
        for v in variants(cap, dtypes, head_sizes):
            if only and not any(k in v[0] for k in only):
                continue
            rows.append(compile_one(cap, *v))
            print(format_row(rows[-1]), flush=True)
    if args.search:
        print("\nsearch (target, dtype, hs, kernel): (BLOCK_M, BLOCK_N, num_warps, num_stages)")
        for r in rows:
            if r["kernel"] in ("attn_fwd", "attn_bwd_dkdv", "attn_bwd_dq") and (
                    r["problems"] or r.get("spill_stores", 0) + r.get("spill_loads", 0)):
                kernel = r["kernel"].split("_")[-1]
                tile, best = search(int(r["target"][3:]), r["dtype"], r["hs"], kernel)
                print(f"    ({r['target'][3:]}, \"{r['dtype']}\", {r['hs']}, \"{kernel}\"): {tile},  # " +
                      format_row(best), flush=True)
    bad = [r for r in rows if r["problems"]]
    n_fp32 = sum(1 for r in rows if r.get("spill_stores", 0) + r.get("spill_loads", 0) > 0 and r["dtype"] == "fp32")
    print(f"{len(rows)} variants, {len(bad)} unfit to ship (compile error, shared memory over the limit, "
          f"fp16/bf16 spill), {n_fp32} fp32 variants spill; {time.time() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
