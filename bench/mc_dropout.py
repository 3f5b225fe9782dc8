"""Benchmark: cost of 30-sample MC-dropout relative to one forward pass, and 112-px vs 224-px speed of VideoMAE-base.

Run: `python bench/mc_dropout.py [--repeats 3] [--samples 30] [--skip-base] [--device cpu] [--threads 2] [--bf16]`.
Random weights, random inputs, batch 1, 16 frames; every figure is the median of `--repeats` timed runs after one
warm-up run (the training step: `--repeats`-1 runs; the tiny model: at least 30). The default device is the GPU if there is one, else the CPU.
`--base-layers 1` shrinks the base model for a quick smoke test of the script.
The last line is `RESULT mc30_vs_single=... base_112_vs_224_speedup=...`, where mc30_vs_single is the base model's
ratio at 224 px (the tiny model's when --skip-base) and the speedup is the forward-pass ratio.
"""
import argparse, os, statistics, time, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch, torch.nn.functional as F
from transformers.utils import logging as hf_logging
from echonet_ef.core import ModelConfig, set_seed, get_device
from echonet_ef.model import build_model, tiny_config
from echonet_ef.infer import clip_outputs
from echonet_ef.results import save_results

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()

def median_time(f, repeats, dev):
    "Median wall time of `f()` over `repeats` runs, after one warm-up run"
    f(); sync(dev)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); sync(dev); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

AMP = dict(enabled=False)

def autocast(dev): return torch.autocast(dev.type, dtype=torch.bfloat16, **AMP)

def forward_fn(model, x):
    def f():
        with torch.no_grad(), autocast(x.device): model(x)
    return f

def mc_fn(model, x, n):
    def f():
        with autocast(x.device): clip_outputs(model, x, n_samples=n)
    return f

def step_fn(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    def f():
        with autocast(x.device): loss = F.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return f

def mc_ratio(name, mcfg, size, n, repeats, dev):
    "Time one forward pass and `n`-sample MC-dropout of the model `mcfg` at `size` px, batch 1"
    model = build_model(mcfg, image_size=size).to(dev).eval()
    x = torch.randn(1, 16, 3, size, size, device=dev)
    t1 = median_time(forward_fn(model, x), repeats, dev)
    tn = median_time(mc_fn(model, x, n), repeats, dev)
    print(f"{name:5s} {size}px  forward {t1*1e3:8.1f} ms   MC-dropout x{n} {tn*1e3:8.1f} ms   ratio {tn/t1:.3f}", flush=True)
    return model, tn/t1

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--samples', type=int, default=30)
    p.add_argument('--skip-base', action='store_true', help='only the tiny model (seconds instead of minutes)')
    p.add_argument('--device', default='auto', help='auto, cpu or cuda')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: torch default)')
    p.add_argument('--bf16', action='store_true', help='bf16 autocast')
    p.add_argument('--base-layers', type=int, default=12, help='transformer blocks of the base model (12 = VideoMAE-base)')
    a = p.parse_args()
    hf_logging.set_verbosity_error(); warnings.filterwarnings('ignore')
    if a.threads: torch.set_num_threads(a.threads)
    AMP['enabled'] = a.bf16
    set_seed(0)
    dev = get_device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {dev} ({name}), {'bf16 autocast' if a.bf16 else 'fp32'}, batch 1, 16 frames, median of {a.repeats}", flush=True)
    _, r_tiny = mc_ratio('tiny', tiny_config(), 112, a.samples, max(a.repeats, 30), dev)   # cheap: more repeats
    if a.skip_base:
        save_results('mc_dropout' + ('_gpu' if dev.type == 'cuda' else ''), dict(mc30_vs_single_tiny=r_tiny), device=name, args=vars(a))
        print(f"RESULT mc30_vs_single={r_tiny:.3f} base_112_vs_224_speedup=nan")
        return
    # VideoMAEConfig() defaults: VideoMAE-base, random weights
    base = ModelConfig(backbone=None, pretrained=False, videomae={} if a.base_layers == 12 else {'num_hidden_layers': a.base_layers})
    fwd, step = {}, {}
    for size in (224, 112):
        model, r = mc_ratio('base', base, size, a.samples, a.repeats, dev)
        if size == 224: r_base = r
        x, y = torch.randn(1, 16, 3, size, size, device=dev), torch.full((1,), 60., device=dev)
        fwd[size] = median_time(forward_fn(model, x), a.repeats, dev)
        step[size] = median_time(step_fn(model.train(), x, y), max(1, a.repeats - 1), dev)
        print(f"base  {size}px  forward {fwd[size]:.3f} s   training step {step[size]:.3f} s "
              f"({model.backbone.embeddings.num_patches} tokens)", flush=True)
        del model
    sp_f, sp_s = fwd[224]/fwd[112], step[224]/step[112]
    print(f"base  112px vs 224px: forward {sp_f:.2f}x faster, training step {sp_s:.2f}x faster")
    save_results('mc_dropout' + ('_gpu' if dev.type == 'cuda' else ''), dict(mc30_vs_single=r_base, mc30_vs_single_tiny=r_tiny,
                 base_112_vs_224_speedup=sp_f, base_112_vs_224_step_speedup=sp_s), device=name, args=vars(a))
    print(f"RESULT mc30_vs_single={r_base:.3f} mc30_vs_single_tiny={r_tiny:.3f} "
          f"base_112_vs_224_speedup={sp_f:.2f} base_112_vs_224_step_speedup={sp_s:.2f}")

if __name__ == '__main__': main()
