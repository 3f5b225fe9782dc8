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
`python bench/uncertainty.py --check` checks the comparison itself on simulated predictions, in seconds.
"""
import argparse, json, os, sys, time, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('WANDB_MODE', 'disabled')
from pathlib import Path
import numpy as np, pandas as pd, torch
from echonet_ef.core import load_config, save_json, json_safe
from echonet_ef.results import save_results
from echonet_ef.synthetic import make_dataset
from echonet_ef.test_utils import cached
from echonet_ef.train import Trainer
from echonet_ef.core import find_model, RUN_STATE
from echonet_ef.model import load_model
from echonet_ef.uncertainty import LEVELS, fit_scales, apply_scale, coverage, coverage_curve, interval_quality
from echonet_ef.evaluate import evaluate_model, ensemble_table, save_fig
import matplotlib.pyplot as plt

CMP_LEVELS = (0.8, 0.9, 0.95)

def method_tables(val:pd.DataFrame, test:pd.DataFrame # `evaluate_model(..., spreads=True)` of VAL and TEST
                 )->dict: # {method: (val, test)} with EF_std the method's spread
    "Per method, the scored VAL and TEST predictions with that method's spread as EF_std"
    ms = [c[len('spread_'):] for c in test.columns if c.startswith('spread_')]
    return {m: tuple(d[~d.skipped].assign(EF_std=d[f'spread_{m}']) for d in (val, test)) for m in ms}

def compare_methods(tables:dict, # {method: (val, test)} tables with EF, EF_pred and the method's EF_std
                    levels=CMP_LEVELS # nominal levels to report the coverage at
                   )->pd.DataFrame: # one row per method
    "Coverage, width, Spearman rho and coverage per EF range of each method, calibrated on VAL, measured on TEST"
    rows = []
    for m, (val, test) in tables.items():
        sc = fit_scales(val.EF, val.EF_pred, val.EF_std, sorted(set(levels) | {0.9}))
        row = dict(method=m, n_val=len(val), n_test=len(test))
        for l in levels:
            t = apply_scale(test, sc[l], l)
            row[f'coverage_{round(l*100)}'] = coverage(t.EF, t.EF_low, t.EF_high)
        t = apply_scale(test, sc[0.9], 0.9)
        q = interval_quality(t.EF, t.EF_pred, t.EF_low, t.EF_high, t.EF_std)
        row.update(mae=float((t.EF - t.EF_pred).abs().mean()), mean_width=q['mean_width'],
                   median_width=q['median_width'], spearman=q['spearman_width_error'],
                   **{f'coverage_{k}': v for k, v in q['coverage_per_range'].items()})
        rows.append(row)
    df = pd.DataFrame(rows).set_index('method')
    if 'constant' in df.index: df['narrower'] = df.mean_width < df.mean_width['constant']
    return df

def meets_aim(row, rho:float=0.3, cov=(0.87, 0.95))->bool:
    "Whether a row of `compare_methods` has rho >= `rho` and 90 % coverage within `cov`"
    return bool(row['spearman'] >= rho and cov[0] <= row['coverage_90'] <= cov[1])

def best_method(cmp:pd.DataFrame # from `compare_methods`, with the constant band
               )->str:
    "The narrower-than-constant method with the highest rho; 'constant' when none is narrower"
    ok = cmp[cmp.narrower & (cmp.index != 'constant')].dropna(subset=['spearman'])
    return 'constant' if ok.empty else str(ok.spearman.idxmax())

def plot_methods(tables:dict, cmp:pd.DataFrame, levels=LEVELS):
    "Observed vs nominal TEST coverage per method (per-level scales fitted on VAL), and mean width against rho"
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.5))
    for i, (m, (val, test)) in enumerate(tables.items()):
        a1.plot(levels, coverage_curve(test, fit_scales(val.EF, val.EF_pred, val.EF_std, levels), levels), 'o-',
                ms=4, color=f'C{i}', label=m)
        r = cmp.loc[m]
        rho = 0.0 if np.isnan(r.spearman) else r.spearman
        a2.scatter(r.mean_width, rho, color=f'C{i}', s=40)
        a2.annotate(m, (r.mean_width, rho), fontsize=8, xytext=(4, 4), textcoords='offset points')
    a1.plot([0, 1], [0, 1], color='0.6', ls=':')
    a1.set(xlabel='nominal coverage', ylabel='observed TEST coverage', xlim=(0.45, 1), ylim=(0.3, 1.02),
           title='calibrated on VAL (one scale per level)')
    a1.legend(fontsize=8, loc='upper left')
    a2.axhline(0.3, color='0.6', ls=':', lw=1)
    a2.set(xlabel='mean width of the 90% interval (EF points)', ylabel='Spearman ρ(width, |error|)',
           title='narrow and following the error: top left')
    fig.tight_layout()
    return fig

def check():
    "The comparison on simulated predictions: a spread that follows the error, one that is noise, the constant band"
    t1 = pd.DataFrame(dict(FileName=['a', 'b'], EF=[50., 30], EF_pred=[52., 35], EF_std=[1., 1], skipped=False))
    ens = ensemble_table([t1, t1.assign(EF_pred=[54., 35]), t1.assign(EF_pred=[56., 35])])
    assert ens.EF_pred.tolist() == [54., 35.] and ens.EF_std.tolist() == [2., 0.], ens
    vt = pd.DataFrame(dict(FileName=['a'], EF=[50.], EF_pred=[52.], EF_std=[1.], skipped=False, spread_constant=[1.],
                           spread_clip_spread=[3.]))
    assert {k: v[1].EF_std.tolist() for k, v in method_tables(vt, vt).items()} == {'constant': [1.], 'clip_spread': [3.]}
    def simm(n, rng):
        sd = rng.uniform(1, 8, n); y = rng.uniform(20, 80, n); p = y + rng.normal(0, sd)
        return pd.DataFrame(dict(FileName=[f'v{i}' for i in range(n)], EF=y, EF_pred=p, skipped=False, spread_good=sd,
                                 spread_noise=rng.uniform(1, 8, n), spread_constant=1.0))
    rng = np.random.default_rng(1)
    cmp = compare_methods(method_tables(simm(1000, rng), simm(2000, rng)))
    assert best_method(cmp) == 'good' and meets_aim(cmp.loc['good']) and not meets_aim(cmp.loc['noise'])
    assert (np.abs(cmp[['coverage_80', 'coverage_90', 'coverage_95']].values - [0.8, 0.9, 0.95]) < 0.03).all()
    assert cmp.mean_width['good'] < cmp.mean_width['constant'] < cmp.mean_width['noise']
    assert abs(cmp.spearman['noise']) < 0.1 and np.isnan(cmp.spearman['constant'])
    assert best_method(cmp.drop('good')) == 'constant'
    assert {'coverage_<30', 'coverage_30-40', 'coverage_>=70'} <= set(cmp.columns)
    fig = plot_methods(method_tables(simm(300, rng), simm(300, rng)), cmp)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ['good', 'noise', 'constant']
    plt.close(fig)
    print(cmp[['coverage_80', 'coverage_90', 'coverage_95', 'mean_width', 'spearman', 'narrower']].round(3).to_markdown())
    print('RESULT check=ok')

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
    ap.add_argument('--check', action='store_true', help="only check the comparison on simulated predictions")
    a = ap.parse_args()
    if a.check: return check()
    torch.set_num_threads(a.threads); warnings.filterwarnings('ignore')
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter(); data = dataset(a.videos)
    print(f"data: {a.videos} videos ({time.perf_counter()-t0:.0f} s)", flush=True)
    runs = {}
    for name, seed, var in [(f'seed{i}', i, False) for i in range(a.k)] + [('variance', 0, True)]:
        t = time.perf_counter()
        done = a.reuse and (out/'runs'/name/RUN_STATE).is_file()
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
        tables['ensemble'] = tuple((e := ensemble_table(mem[s]))[~e.skipped] for s in ('VAL', 'TEST'))
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
    save_results('uncertainty', {f'{m}_{k}': r[k] for m, r in cmp.iterrows() for k in ('spearman', 'coverage_90', 'mean_width')},
                 cmp.reset_index(), best=best, args=vars(a))
    print(f"wrote {out/'uncertainty.png'} and {out/'uncertainty.json'} ({time.perf_counter()-t0:.0f} s in all)")
    print('RESULT best=' + best + ' ' + ' '.join(f"{m}_rho={r.spearman:.3f} {m}_cov90={r.coverage_90:.3f} "
                                                 f"{m}_width={r.mean_width:.2f}" for m, r in cmp.iterrows()))

if __name__ == '__main__': main()
