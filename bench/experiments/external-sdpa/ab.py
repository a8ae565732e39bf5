"""A/B of the dual block's external attention: GEMMs (suite.models.daformer as it was) against one
fused attention call over (key, sample x head) with the key bias folded into a padded head dim
(`pad`) or passed as attn_mask (`mask`). Also checks the candidates against the GEMM form on the
device, at a batch whose sample x head count passes 65,535 (a CUDA grid limit), and profiles the
compiled step.

`python bench/experiments/external-sdpa/ab.py --device cuda --out DIR [--quick]`; writes DIR/ab.json,
DIR/ab.md, DIR/prof_*.txt (`--render DIR` rewrites DIR/ab.md from DIR/ab.json).
"""
import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from suite.models.daformer import DualAttentionBlock  # noqa: E402
from bench.perf.machine import describe  # noqa: E402
from bench.perf.matmul import matmul_rate  # noqa: E402
from bench.perf.step import Case, Step, count_flops  # noqa: E402
from bench.perf.timing import summary, time_calls  # noqa: E402

T0 = time.time()


def say(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def fused_attend(block, x, external):
    """The block's `attend` with the external attention computed by `external(q, v, keys, biases)`,
    which returns (K, B, h, N, d)."""
    B, N, C = x.shape
    q, k, v = block.qkv(block.norm1(x)).reshape(B, N, 3, block.num_heads, block.head_dim).permute(2, 0, 3, 1, 4)
    internal = F.scaled_dot_product_attention(q, k, v)
    ext = external(q, v, torch.stack(tuple(block.keys)), torch.stack(tuple(block.key_biases)))
    return (ext + internal).permute(1, 0, 3, 2, 4).reshape(B, -1, N, C)


def external_pad(q, v, keys, biases):
    """Bias folded into the head dim: [q/sqrt(d), 1, 0...] . [m_p, b_p, 0...] = q m_p / sqrt(d) + b_p."""
    (B, h, N, d), (K, P) = q.shape, biases.shape
    E = (d + 8) // 8 * 8  # d + 1 (the bias column), rounded up to what fused kernels take
    qe = torch.cat([q * d ** -0.5, q.new_ones(B, h, N, 1), q.new_zeros(B, h, N, E - d - 1)], -1)
    me = torch.cat([keys, biases.unsqueeze(-1), keys.new_zeros(K, P, E - d - 1)], -1).to(qe.dtype)
    ve = F.pad(v, (0, E - d))
    Q = qe.reshape(1, B * h, N, E).expand(K, B * h, N, E)
    M = me.unsqueeze(1).expand(K, B * h, P, E)
    V = ve.reshape(1, B * h, P, E).expand(K, B * h, P, E)
    return F.scaled_dot_product_attention(Q, M, V, scale=1.0)[..., :d].view(K, B, h, N, d)


def external_mask(q, v, keys, biases):
    (B, h, N, d), (K, P) = q.shape, biases.shape
    Q = q.reshape(1, B * h, N, d).expand(K, B * h, N, d)
    M = keys.to(q.dtype).unsqueeze(1).expand(K, B * h, P, d)
    V = v.reshape(1, B * h, P, d).expand(K, B * h, P, d)
    mask = biases.to(q.dtype).view(K, 1, 1, P).expand(K, B * h, N, P)
    return F.scaled_dot_product_attention(Q, M, V, attn_mask=mask).view(K, B, h, N, d)


VARIANTS = {"gemm": None, "pad": external_pad, "mask": external_mask}


def make(case, device, name, compiled):
    step = Step(case, device, compiled=compiled)
    if VARIANTS[name] is not None:
        block = step.model.dual
        block.attend = lambda x: fused_attend(block, x, VARIANTS[name])
    return step


def agreement(device, dtype, batch, grads=True):
    """Max |candidate - gemm| over the embeddings (and, with `grads`, every dual-block gradient),
    relative to the largest |gemm|; an error is recorded, not raised."""
    case = Case("daformer_m", 10, dtype=dtype, batch=batch)
    out, ref = {}, None
    for name in VARIANTS:
        try:
            step = make(case, device, name, False)
            block = step.model.dual
            tokens = torch.randn(batch, block.num_tokens, block.qkv.in_features, device=device,
                                 generator=torch.Generator(device).manual_seed(0))
            with torch.set_grad_enabled(grads), step._autocast():
                emb = block(tokens)
            flat = [emb.float()]
            if grads:
                params = [p for p in block.parameters() if p.requires_grad]
                flat += [g.float() for g in torch.autograd.grad(emb.float().square().mean(), params)]
            if ref is None:
                ref, out[name] = flat, "reference"
            else:
                out[name] = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(flat, ref))
            del step, block, emb, flat
        except Exception as e:  # noqa: BLE001 - recorded, not hidden
            out[name] = f"error: {type(e).__name__}: {str(e)[:300]}"
    torch.cuda.empty_cache() if device.type == "cuda" else None
    return out


def ab(case, device, names, compiled, repeats, inner, peak, model_flops):
    """Images/s of each variant, samples interleaved; MFU at the GEMM form's FLOPs per image (the
    padded head dim makes `pad` execute a little more)."""
    steps = {}
    for name in names:
        t = time.time()
        try:
            steps[name] = make(case, device, name, compiled)
            time_calls(steps[name], 2, warmup=1, device=device)
        except Exception as e:  # noqa: BLE001
            say(f"  {name}: error {type(e).__name__}: {str(e)[:300]}")
            steps.pop(name, None)
            continue
        say(f"  {name} ready ({time.time() - t:.1f}s{' incl. compile' if compiled else ''})")
    seconds = {n: [] for n in steps}
    for _ in range(repeats):
        for n, step in steps.items():
            seconds[n] += time_calls(step, 1, warmup=0, device=device, inner=inner)
    row = {"case": case.name, "compiled": compiled, "model_gflop_per_image": model_flops / 1e9}
    for n, s in seconds.items():
        ips = summary([case.batch / x for x in s])
        row[n] = {"images_per_s": ips, "mfu": model_flops * ips["median"] / 1e9 / peak}
        if n != "gemm" and "gemm" in seconds:
            row[n]["vs_gemm"] = summary([g / x for g, x in zip(seconds["gemm"], s)])
    return row


def profile_compiled(device, case, name, out):
    from torch.profiler import ProfilerActivity, profile
    step = make(case, device, name, True)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    (out / f"prof_{name}_compiled.txt").write_text(
        prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=45, max_name_column_width=100))


def render(res) -> str:
    lines = [f"# External attention: GEMMs against one fused attention call ({res['machine'].get('gpu') or res['machine']['cpu_model']})",
             "", f"`{res['command']}`; medians of interleaved samples; MFU at the GEMM form's FLOPs per image, against "
             "the dense matmul rate of the dtype measured in the same run "
             f"({', '.join(f'{k} {v:,.0f} GFLOP/s' for k, v in res['peaks_gflops'].items())}).", "",
             "Agreement with the GEMM form (max |candidate − gemm| / max |gemm| over the embeddings and every dual-block "
             "gradient, batch 16): " + "; ".join(f"{k}: " + ", ".join(f"{n} {v if isinstance(v, str) else f'{v:.1e}'}"
                                                                    for n, v in r.items() if n != "gemm")
                                                  for k, r in res["check"].items()) + ".", "",
             f"Forward at batch {res['big_batch']['batch']} (sample × head count over 65,535): "
             + ", ".join(f"{n} {v if isinstance(v, str) else f'{v:.1e}'}" for n, v in res['big_batch']['result'].items()
                         if n != "gemm") + ".", "",
             "| case | compiled | variant | img/s | range | MFU | ÷ gemm (paired) |", "|---|---|---|---|---|---|---|"]
    for row in res["rows"]:
        for n in VARIANTS:
            if n not in row:
                continue
            r, ips = row[n], row[n]["images_per_s"]
            vs = r.get("vs_gemm")
            lines.append(f"| {row['case']} | {'yes' if row['compiled'] else 'no'} | {n} | {ips['median']:,.0f} | "
                         f"{ips['min']:,.0f}–{ips['max']:,.0f} | {r['mfu']:.3f} | "
                         + (f"{vs['median']:.3f}× ({vs['min']:.3f}–{vs['max']:.3f})" if vs else "—") + " |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--render", action="store_true", help="only rewrite OUT/ab.md from OUT/ab.json")
    args = p.parse_args()
    if args.render:
        out = Path(args.out)
        (out / "ab.md").write_text(render(json.loads((out / "ab.json").read_text())))
        return
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = device.type == "cuda"
    big, small = (1024, 128) if gpu else (16, 8)
    repeats, inner = (8, 5) if not args.quick else (2, 1)
    res = {"command": " ".join(sys.argv), "machine": describe(device), "rows": []}

    def save():
        (out / "ab.json").write_text(json.dumps(res, indent=1))
        if res["rows"]:
            (out / "ab.md").write_text(render(res))

    res["peaks_gflops"] = {d: matmul_rate(d, device, 8192 if gpu else 512, 5)["gflops"]["median"] for d in ("bf16", "fp32")}
    say(f"peaks {res['peaks_gflops']}")
    res["check"] = {f"{dt} b{b}": agreement(device, dt, b) for dt, b in (("fp32", 16), ("bf16", 16))}
    say(f"check {res['check']}")
    save()
    res["big_batch"] = {"batch": 6000 if gpu else 8, "result": agreement(device, "bf16", 6000 if gpu else 8, grads=False)}
    say(f"big batch {res['big_batch']}")
    save()
    flops = {}
    for dt, b in (("bf16", big), ("fp32", small), ("bf16", small)):
        case = Case("daformer_m", 10, dtype=dt, batch=b)
        flops.setdefault(b, count_flops(case, device) / b)
        res["rows"].append(ab(case, device, list(VARIANTS), False, repeats, inner, res["peaks_gflops"][dt], flops[b]))
        say(json.dumps(res["rows"][-1])[:600])
        save()
    eager_big = res["rows"][0]
    cands = [n for n in ("pad", "mask") if n in eager_big]
    best = max(cands, key=lambda n: eager_big[n]["images_per_s"]["median"]) if cands else None
    case = Case("daformer_m", 10, dtype="bf16", batch=big)
    res["rows"].append(ab(case, device, ["gemm"] + ([best] if best else []), True, repeats, inner,
                          res["peaks_gflops"]["bf16"], flops[big]))
    say(json.dumps(res["rows"][-1])[:600])
    save()
    if gpu:
        for name in ["gemm"] + ([best] if best else []):
            profile_compiled(device, case, name, out)
            say(f"profiled {name}")
    res["took_s"] = time.time() - T0
    save()


if __name__ == "__main__":
    main()
