"""Benchmark: which per-video uncertainty follows the error? The methods side by side on the same TEST videos.

Run: `python bench/uncertainty.py [--videos 200] [--steps 300] [--k 3] [--clips all] [--out bench/results/uncertainty]`.
A synthetic EchoNet-format dataset (112 px, 60-100 frames; TRAIN/VAL/TEST 55/22.5/22.5 %) and four tiny VideoMAE runs
(clip_stats stem, one token per patch across the clip): a weighted-MSE run (seed 0), K-1 more with other seeds (the
deep ensemble, with the first), and one with the variance head trained with beta-NLL. Every method is calibrated by
split conformal prediction on VAL (one scale per level) and measured on TEST: coverage at 80/90/95 %, mean and
median width of the 90 % interval, Spearman rho(width, |error|), 90 % coverage per EF category.
Prints the table (markdown) and the method the default rule picks; saves `uncertainty.png` and `uncertainty.json` in
`--out`. About 6-10 minutes on 2 CPU cores (the four trainings take most of it). The dataset is cached across runs.
The last line is `RESULT best=... <method>_rho=... <method>_cov90=... <method>_width=...`.
"""
import argparse, json, os, sys, time, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('WANDB_MODE', 'disabled')
from pathlib import Path
import numpy as np, pandas as pd, torch
from echonet_ef.core import load_config, save_json, json_safe
from echonet_ef.synthetic import make_dataset
from echonet_ef.test_utils import cached
from echonet_ef.train import Trainer
from echonet_ef.model import load_model, find_model
from echonet_ef.evaluate import (evaluate_model, method_tables, ensemble_table, compare_methods, best_method,
                                 meets_aim, plot_methods, save_fig)

def dataset(n:int)->Path:
    "A cached synthetic dataset of `n` short videos with larger VAL and TEST splits than the default"
    def build(d):
        fl = make_dataset(d, n_videos=n, seed=1, frames=(60, 100))
        n_val = n_test = int(round(0.225*n))
        fl['Split'] = np.random.default_rng(0).permutation(['TRAIN']*(n - n_val - n_test) + ['VAL']*n_val
                                                           + ['TEST']*n_test)
        fl.to_csv(Path(d)/'FileList.csv', index=False)
    return cached(f'bench-uncertainty-data-{n}', build, key='v1')

def train(data, out, steps, seed=0, variance=False, threads=1):
    "One tiny run (the demo's architecture, smaller) of `steps` steps; returns its model folder"
    c = {'data': dict(root=str(data), size=112, clip_len=16, period=4, batch_size=8, num_workers=0, pad=0),
         'model': dict(backbone=None, pretrained=False, stem='clip_stats', variance=variance, head_dropout=0.1,
                       videomae=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=256, tubelet_size=16, patch_size=16)),
         'loss': dict(name='beta_nll' if variance else 'weighted_mse', beta=0.5),
         'optim': dict(lr_backbone=1e-3, lr_head=1e-3),
         'train': dict(max_steps=steps, grad_accum=1, val_every=max(1, steps//2), log_every=50, seed=seed,
                       wandb='disabled', device='cpu', threads=threads, amp='fp32', patience=100)}
    Trainer(load_config(c), out, quiet=True, overwrite=True).fit()
    return find_model(out)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--videos', type=int, default=200); ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--k', type=int, default=3); ap.add_argument('--clips', default='all')
    ap.add_argument('--samples', type=int, default=30)
    ap.add_argument('--out', default='bench/results/uncertainty'); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--reuse', action='store_true', help="use the runs an earlier call left in --out/runs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads); warnings.filterwarnings('ignore')
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter(); data = dataset(a.videos)
    print(f"data: {a.videos} videos ({time.perf_counter()-t0:.0f} s)", flush=True)
    runs = {}
    for name, seed, var in [(f'seed{i}', i, False) for i in range(a.k)] + [('variance', 0, True)]:
        t = time.perf_counter()
        done = a.reuse and (out/'runs'/name/'checkpoints'/'best_model').is_dir()
        runs[name] = find_model(out/'runs'/name) if done else train(data, out/'runs'/name, a.steps, seed, var, a.threads)
        print(f"trained {name}: {time.perf_counter()-t:.0f} s", flush=True)
    ev = lambda m, split, **kw: evaluate_model(load_model(runs[m]), data, split, clips=a.clips, scale=1.0,
                                               n_samples=a.samples, **kw)
    t = time.perf_counter()
    base = {s: ev('seed0', s, spreads=True) for s in ('VAL', 'TEST')}
    tables = method_tables(base['VAL'], base['TEST'])
    tables.pop('variance', None)
    var = {s: ev('variance', s, method='variance') for s in ('VAL', 'TEST')}
    tables['variance'] = tuple(var[s][~var[s].skipped] for s in ('VAL', 'TEST'))
    if a.k > 1:
        mem = {s: [base[s]] + [ev(f'seed{i}', s, method='constant') for i in range(1, a.k)] for s in ('VAL', 'TEST')}
        tables['ensemble'] = tuple(ensemble_table(mem[s]) for s in ('VAL', 'TEST'))
    tables['constant'] = tables.pop('constant')
    print(f"evaluated ({a.clips} clips): {time.perf_counter()-t:.0f} s", flush=True)
    cmp = compare_methods(tables)
    best = best_method(cmp)
    cols = ['mae', 'coverage_80', 'coverage_90', 'coverage_95', 'mean_width', 'median_width', 'spearman', 'narrower']
    cats = [c for c in cmp.columns if c.startswith('coverage_') and not c[9:].isdigit()]
    print(f"\n{a.videos} synthetic videos ({cmp.n_val.iloc[0]} VAL, {cmp.n_test.iloc[0]} TEST), {a.steps} steps per run, "
          f"clips {a.clips}; 90 % interval for width and rho\n")
    print(cmp[cols].round(3).to_markdown())
    print('\n90 % coverage per EF category (TEST):\n')
    print(cmp[cats].round(2).to_markdown())
    print(f"\ndefault by the rule (narrower than the constant band, highest rho): {best}; "
          f"reaches the aim (rho >= 0.3, 90 % coverage 0.87-0.95): "
          f"{', '.join(m for m in cmp.index if meets_aim(cmp.loc[m])) or 'none'}")
    save_fig(plot_methods(tables, cmp), out/'uncertainty.png')
    save_json(json_safe(dict(args=vars(a), best=best, table=cmp.reset_index().to_dict('records'),
                             seconds=time.perf_counter()-t0)), out/'uncertainty.json')
    print(f"wrote {out/'uncertainty.png'} and {out/'uncertainty.json'} ({time.perf_counter()-t0:.0f} s in all)")
    print('RESULT best=' + best + ' ' + ' '.join(f"{m}_rho={r.spearman:.3f} {m}_cov90={r.coverage_90:.3f} "
                                                 f"{m}_width={r.mean_width:.2f}" for m, r in cmp.iterrows()))

if __name__ == '__main__': main()
