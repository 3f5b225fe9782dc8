"""Benchmark: optimizer steps/s of VideoMAE-base masked-video pretraining, and the largest batch that fits.

Run: `python bench/pretrain_step.py [--device cuda] [--size 224] [--batch 16] [--steps 10]
[--find-max-batch]`.
A step is `echonet_ef_pretrain`'s: `MaskedVideoModel` (transformers' `VideoMAEForPreTraining`, VideoMAE-base, random
weights, 16 frames) on random clips under a 0.9 tube mask, bf16 autocast on the GPU (fp32 on the CPU), backward,
AdamW. The rate is the median of `--steps` timed steps after 2 warm-up steps. `--find-max-batch` doubles the batch
from `--batch` until it runs out of GPU memory, then bisects (OOM caught), within `--time-budget` seconds.
The last line is `RESULT pt_steps_s=... pt_clips_s=... pt_peak_gib=... [pt_max_batch=...]`.
"""
import argparse, os, statistics, time
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import numpy as np, torch
from echonet_ef.core import load_config
from echonet_ef.results import save_results
from echonet_ef.pretrain import build_pretrain_model, tube_mask

def make(a):
    "The model, optimizer and a step function of batch size `b`"
    cfg = load_config(None, ['model.backbone=null', 'model.pretrained=false', f'data.size={a.size}', 'data.clip_len=16'])
    m = build_pretrain_model(cfg).to(a.device).train()
    opt = torch.optim.AdamW(m.parameters(), 1e-4, betas=(0.9, 0.95))
    dt = torch.bfloat16 if a.device == 'cuda' else None
    def step(b, rng=np.random.default_rng(0)):
        x = torch.randn(b, 16, 3, a.size, a.size, device=a.device)
        mask = tube_mask(m.grid, 0.9, b, rng)
        with torch.autocast(a.device, dtype=dt, enabled=dt is not None): loss = m(x, mask).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if a.device == 'cuda': torch.cuda.synchronize()
    return m, step

def fits(step, b, device)->bool:
    "Whether a step of batch `b` runs without running out of memory"
    try: step(b); return True
    except torch.OutOfMemoryError: return False
    finally:
        if device == 'cuda': torch.cuda.empty_cache()

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--size', type=int, default=224); ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--find-max-batch', action='store_true')
    ap.add_argument('--time-budget', type=float, default=120)
    a = ap.parse_args()
    t0 = time.time()
    m, step = make(a)
    for _ in range(2): step(a.batch)
    if a.device == 'cuda': torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(a.steps):
        t = time.perf_counter(); step(a.batch); ts.append(time.perf_counter() - t)
    med = statistics.median(ts)
    peak = torch.cuda.max_memory_allocated()/2**30 if a.device == 'cuda' else float('nan')
    print(f"VideoMAE-base pretraining, {a.size} px, 16 frames, mask 0.9, batch {a.batch}, {a.device}"
          f"{' bf16' if a.device == 'cuda' else ' fp32'}: {1/med:.2f} steps/s, {a.batch/med:.1f} clips/s, "
          f"peak {peak:.1f} GiB", flush=True)
    res = f"pt_steps_s={1/med:.3f} pt_clips_s={a.batch/med:.1f} pt_peak_gib={peak:.1f}"
    if a.find_max_batch and a.device == 'cuda':
        lo, hi = a.batch, None
        while hi is None and time.time() - t0 < a.time_budget:
            if fits(step, 2*lo, a.device): lo *= 2
            else: hi = 2*lo
        while hi is not None and hi - lo > max(1, lo//16) and time.time() - t0 < a.time_budget:
            mid = (lo + hi)//2
            if fits(step, mid, a.device): lo = mid
            else: hi = mid
        print(f"largest batch that fits: {lo}{'' if hi is not None else ' (or more: time budget spent)'}")
        res += f" pt_max_batch={lo}"
    save_results('pretrain_step' + ('_gpu' if a.device == 'cuda' else ''),
                 {k: float(v) for k, v in (kv.split('=') for kv in res.split())}, args=vars(a))
    print(f"RESULT {res}")

if __name__ == '__main__': main()
