"""Benchmark: cost of the `clip_stats` input stem (04_model) in a training step of the demo's model.

Run: `python bench/stem.py [--repeats 20] [--batch 8] [--threads 1]`.
The demo's model (configs/demo.yaml: VideoMAE hidden 128, 4 layers, tubelet 16, 112 px, 16 frames) with random weights
and inputs; one training step = forward, weighted-MSE loss, backward, AdamW step. Interleaved timed runs of the model
with and without the stem (after warm-ups), median of `--repeats` each, in one process.
The last line is `RESULT stem_vs_none_step=... stem_only_vs_step=...`: the ratio of the step times with and without
the stem, and the stem's own forward time as a fraction of a step without it.
"""
import argparse, os, statistics, time, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch, yaml
from echonet_ef.core import load_config, set_seed, LossConfig
from echonet_ef.model import build_model, ClipStats
from echonet_ef.loss import get_loss
from echonet_ef.demo import DEMO_YAML
from echonet_ef.results import save_results

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=20); ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads); set_seed(0)
    cfg = load_config(yaml.safe_load(DEMO_YAML), ['data.root=x'])
    T, S = cfg.data.clip_len, cfg.data.size
    x, y = torch.randn(a.batch, T, 3, S, S), torch.rand(a.batch)*60 + 20
    lf = get_loss(LossConfig())
    steps = {}
    for stem in ('none', 'clip_stats'):
        m = build_model(load_config(cfg, [f'model.stem={stem}']).model, S, T).train()
        opt = torch.optim.AdamW(m.parameters(), 1e-4)
        def step(m=m, opt=opt):
            loss = lf(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
        steps[stem] = step
    st = ClipStats()
    def stem_only():
        with torch.no_grad(): st(x)
    for f in (*steps.values(), stem_only): f(); f()   # warm-up
    ts = {k: [] for k in (*steps, 'stem_only')}
    for _ in range(a.repeats):   # interleaved, so drifts in machine speed hit both alike
        for k, f in (*steps.items(), ('stem_only', stem_only)):
            t = time.perf_counter(); f(); ts[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in ts.items()}
    print(f"training step, batch {a.batch}, {a.threads} thread(s): no stem {med['none']*1e3:.0f} ms, "
          f"clip_stats {med['clip_stats']*1e3:.0f} ms; the stem alone {med['stem_only']*1e3:.1f} ms")
    res = dict(stem_vs_none_step=med['clip_stats']/med['none'], stem_only_vs_step=med['stem_only']/med['none'])
    save_results('stem', res, [dict(step=k, ms=v*1e3) for k, v in med.items()], args=vars(a))
    print('RESULT ' + ' '.join(f"{k}={v:.3f}" for k, v in res.items()))

if __name__ == '__main__': main()
