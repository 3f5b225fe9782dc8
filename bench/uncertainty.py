"""Benchmark: does a per-video interval follow the error? Each uncertainty method against its own model's constant band.

Run: `python bench/uncertainty.py [--world realistic] [--videos 1200] [--steps 1500] [--k 3] [--clips 8] [--jobs N]
[--config YAML] [--tag TAG]`
and the control `python bench/uncertainty.py --world clean --k 2`.
A synthetic EchoNet-format dataset (`make_dataset`, seed 1) of the chosen world, split TRAIN/VAL/TEST 1/2, 1/4, 1/4
(1200 videos: 600/300/300), and the demo's model (configs/demo.yaml, `--steps` steps) trained K times with weighted
MSE (seeds 0..K-1: the deep ensemble) and once with the variance head and beta-NLL. Models and methods compared:
  seed0: mc_dropout, clip_spread, constant;  variance: variance, constant;  ensemble: ensemble, constant;
  oracle (realistic world only): seed0's predictions with the spread the truth file `Difficulty.csv` gives
  (sqrt(label sd^2 + beat-to-beat EF sd^2 + the model's own error^2)): the ceiling of any method.
Every row is calibrated as `echonet_ef_evaluate --calibrate` does (split conformal on VAL, one scale per predicted-EF
category, `fit_calibration`) and measured on TEST: coverage at 80/90/95 %, mean width of the 90 % interval,
Spearman rho(spread, |error|) with a bootstrap 95 % CI (the method's ranking; NaN for a constant band), rho(spread, true label sd), 90 % coverage per true-quality
tercile and per EF category, and selective prediction (the MAE of the videos kept when the widest are set aside;
`sel_area` is its mean over kept fractions 0.2-1.0, divided by the MAE of all: 1 = no better than chance;
`interval_quality` computes rho and the selective-prediction figures, as `echonet_ef_evaluate` reports them).
Writes `bench/results/uncertainty[_clean][_TAG].json` and the figure `nbs/images/uncertainty[_clean][_TAG].png`.
The trainings run side by side, one per core (`--jobs`, default all cores; each on one thread, so the results do not
depend on it): 16 minutes on 2 cores, about 40 on one. `--config YAML` trains another model (e.g. a larger one on a
GPU) in place of the demo's, one training at a time unless `--jobs` says otherwise.
`python bench/uncertainty.py --check` checks the comparison itself on simulated predictions, in seconds.
"""
import argparse, os, time, warnings, multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('WANDB_MODE', 'disabled')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
from pathlib import Path
import numpy as np, pandas as pd, torch
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from echonet_ef.core import RUN_STATE, find_model, z_value, load_config
from echonet_ef.data import cpu_cores
from echonet_ef.demo import demo_config
from echonet_ef.synthetic import make_dataset
from echonet_ef.test_utils import cached
from echonet_ef.train import Trainer
from echonet_ef.model import load_model
from echonet_ef.uncertainty import (fit_calibration, calibrate_table, coverage, interval_quality, spearman,
                                   selective_curve, SELECTIVE_KEEP)
from echonet_ef.evaluate import evaluate_model, ensemble_table, save_fig
from echonet_ef.results import save_results, RESULTS_DIR

CMP_LEVELS = (0.8, 0.9, 0.95)

def boot_rho(a, b, n:int=1000, seed:int=0)->tuple:
    "A bootstrap 95 % interval of `spearman(a, b)` over videos"
    a, b, rng = np.asarray(a, float), np.asarray(b, float), np.random.default_rng(seed)
    r = np.array([spearman(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(n))])
    r = r[np.isfinite(r)]
    return (float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))) if len(r) else (float('nan'),)*2

def score(val:pd.DataFrame, test:pd.DataFrame, truth:pd.DataFrame=None, levels=CMP_LEVELS)->dict:
    "One row: calibrate the spread EF_std on `val` (per predicted-EF category) and measure the intervals on `test`"
    row = dict(n_val=len(val), n_test=len(test), mae=float((test.EF - test.EF_pred).abs().mean()))
    for l in levels:
        t = calibrate_table(test, fit_calibration(val, l), l)
        row[f'coverage_{round(l*100)}'] = coverage(t.EF, t.EF_low, t.EF_high)
    t = calibrate_table(test, fit_calibration(val, 0.9), 0.9)
    err = (t.EF - t.EF_pred).abs().values
    q = interval_quality(t.EF, t.EF_pred, t.EF_low, t.EF_high, t.EF_std)
    row.update(mean_width=q['mean_width'], rho=q['spearman_width_error'], sel_area=q['selective_area'],
               sel_mae_80=q['selective_mae_80'], **dict(zip(('rho_lo', 'rho_hi'), boot_rho(t.EF_std, err))),
               **{f'cov_{c}': v['coverage'] for c, v in q['coverage_per_category'].items()},
               **{f'n_{c}': v['n'] for c, v in q['coverage_per_category'].items()})
    sel = selective_curve(t.EF_std, err)
    row['curve'] = sel.tolist()
    if truth is not None:
        tr = truth.set_index('FileName').loc[t.FileName]
        row['rho_label_sd'] = spearman(t.EF_std, tr.label_sd)
        ter = pd.qcut(tr.quality.values, 3, labels=['poor', 'middle', 'good'])
        inside = ((t.EF >= t.EF_low) & (t.EF <= t.EF_high)).values
        row.update({f'cov_q_{k}': float(inside[ter == k].mean()) for k in ('poor', 'middle', 'good')})
    return row

def compare(tables:dict, # {(model, method): (val, test)} scored predictions, EF_std the method's spread
            truth:pd.DataFrame=None # the truth file, for rho(spread, label sd) and the quality terciles
           )->pd.DataFrame:
    "A `score` row per (model, method); `narrower`: narrower on average than the same model's constant band"
    df = pd.DataFrame([dict(model=mo, method=me, **score(v, t, truth)) for (mo, me), (v, t) in tables.items()])
    const = df[df.method == 'constant'].set_index('model').mean_width
    df['narrower'] = [bool(r.method != 'constant' and r.model in const and r.mean_width < const[r.model])
                      for r in df.itertuples()]
    return df

def meets_aim(r, rho:float=0.3, cov=(0.87, 0.95), cov_tercile=(0.85, 0.95))->bool:
    "The aim: 90 % coverage in `cov` overall and `cov_tercile` per quality tercile, narrower than its constant band, rho >= `rho` with a CI above 0"
    ter = [r.get(f'cov_q_{k}', np.nan) for k in ('poor', 'middle', 'good')]
    return bool(r['narrower'] and r['rho'] >= rho and r['rho_lo'] > 0 and cov[0] <= r['coverage_90'] <= cov[1]
                and all(cov_tercile[0] <= c <= cov_tercile[1] for c in ter if c == c))

def best_method(df:pd.DataFrame)->str:
    "The product method (not the oracle) narrower than its own constant band with the highest rho; else 'constant'"
    ok = df[df.narrower & (df.model != 'oracle') & df.rho.notna()]
    return 'constant' if ok.empty else str(ok.loc[ok.rho.idxmax(), 'method'])

def plot(df:pd.DataFrame, title:str):
    "Width against rho (with its CI) per row, and the selective-prediction curves"
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, r in enumerate(df.itertuples()):
        lab, c = f'{r.model}: {r.method}', f'C{i}'
        if r.rho == r.rho:      # a constant band ranks nothing: its width is marked on the axis instead
            a1.errorbar(r.mean_width, r.rho, yerr=[[r.rho - r.rho_lo], [r.rho_hi - r.rho]], fmt='o', color=c, capsize=3)
            a1.annotate(lab, (r.mean_width, r.rho), fontsize=7, xytext=(4, 3), textcoords='offset points')
        else: a1.axvline(r.mean_width, color=c, ls=':', lw=1, label=f'{lab} (width)')
        a2.plot(SELECTIVE_KEEP, r.curve, '-' if r.method != 'constant' else ':', color=c, label=lab)
    a1.legend(fontsize=7, loc='lower right')
    a1.axhline(0.3, color='0.6', ls=':', lw=1); a1.axhline(0, color='0.8', lw=0.8)
    a1.set(xlabel='mean width of the calibrated 90% interval (EF points)', ylabel='Spearman ρ(spread, |error|)',
           title=title)
    a2.set(xlabel='fraction of TEST videos kept (narrowest intervals first)', ylabel='MAE of the kept videos',
           title='selective prediction')
    a2.legend(fontsize=7)
    fig.tight_layout()
    return fig

def check():
    "The comparison on simulated predictions: a spread that follows the error, one that is noise, the constant band"
    def sim(n, rng, split):
        sd = rng.uniform(1, 8, n); y = rng.uniform(20, 80, n)
        return pd.DataFrame(dict(FileName=[f'{split}{i}' for i in range(n)], EF=y, EF_pred=y + rng.normal(0, sd),
                                 skipped=False, sd=sd, noise=rng.uniform(1, 8, n), quality=1/sd, label_sd=sd))
    rng = np.random.default_rng(1)
    v, t = sim(1000, rng, 'v'), sim(1500, rng, 't')
    truth = pd.concat([v, t])
    tabs = {('m', k): (v.assign(EF_std=v[c]), t.assign(EF_std=t[c])) for k, c in [('good', 'sd'), ('noise', 'noise')]}
    tabs[('m', 'constant')] = tuple(d.assign(EF_std=1.0) for d in (v, t))
    df = compare(tabs, truth).set_index('method')
    assert df.loc['good', 'rho'] > 0.3 and df.loc['good', 'rho_lo'] > 0 and abs(df.loc['noise', 'rho']) < 0.1
    assert np.isnan(df.loc['constant', 'rho'])          # a constant band ranks nothing
    assert (np.abs(df[['coverage_80', 'coverage_90', 'coverage_95']].values - [0.8, 0.9, 0.95]) < 0.04).all()
    assert df.loc['good', 'narrower'] and not df.loc['noise', 'narrower']
    assert df.loc['good', 'sel_area'] < 0.9 < df.loc['noise', 'sel_area'] < 1.1, df.sel_area
    assert df.loc['good', 'rho_label_sd'] > 0.99 and meets_aim(df.loc['good']) and not meets_aim(df.loc['noise'])
    assert best_method(df.reset_index()) == 'good' and best_method(df.reset_index().iloc[1:]) == 'constant'
    plt.close(plot(df.reset_index(), 'check'))
    print(df[['coverage_90', 'mean_width', 'rho', 'rho_lo', 'rho_hi', 'sel_area', 'narrower']].round(3).to_markdown())
    print('RESULT check=ok')

def dataset(world:str, n:int)->Path:
    "A cached synthetic dataset of `n` videos of `world`, split 1/2, 1/4, 1/4 (the truth file's Split follows)"
    def build(d):
        fl = make_dataset(d, n_videos=n, seed=1, world=world, workers=cpu_cores())
        n_val = n_test = n//4
        fl['Split'] = np.random.default_rng(0).permutation(['TRAIN']*(n - n_val - n_test) + ['VAL']*n_val
                                                           + ['TEST']*n_test)
        fl.to_csv(Path(d)/'FileList.csv', index=False)
        if (Path(d)/'Difficulty.csv').exists():
            tr = pd.read_csv(Path(d)/'Difficulty.csv')
            tr['Split'] = tr.FileName.map(dict(zip(fl.FileName, fl.Split)))
            tr.to_csv(Path(d)/'Difficulty.csv', index=False)
    return cached(f'bench-uncertainty-{world}-{n}', build, key='v3')

def train(data, out, steps, seed=0, variance=False, config=None):
    "The demo's model (or `config`'s) trained `steps` steps on `data` (variance head, beta-NLL if `variance`); its run"
    warnings.filterwarnings('ignore')
    ov = [f'train.max_steps={steps}', f'train.val_every={max(1, steps//3)}', f'train.seed={seed}',
          'train.max_minutes=null', 'train.keep_last=1']
    if variance: ov += ['model.variance=true', 'loss.name=beta_nll', 'loss.beta=0.5']
    if config: cfg = load_config(config, [f'data.root={data}', *ov])
    else: torch.set_num_threads(1); cfg = demo_config(str(data), ov + ['data.num_workers=0', 'train.threads=1'])
    with Trainer(cfg, out, quiet=True, overwrite=True) as t: t.fit()
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--world', default='realistic', choices=['realistic', 'clean'])
    ap.add_argument('--videos', type=int, default=1200); ap.add_argument('--steps', type=int, default=1500)
    ap.add_argument('--k', type=int, default=3); ap.add_argument('--clips', default='8')
    ap.add_argument('--samples', type=int, default=30)
    ap.add_argument('--jobs', type=int, default=None,
                    help="trainings side by side (default: one per core for the demo's model, one with --config)")
    ap.add_argument('--config', default=None, help="a training config (a larger model on a GPU) instead of the demo's")
    ap.add_argument('--runs', default='/tmp/echonet_ef_bench_uncertainty', help="where the trained runs go")
    ap.add_argument('--reuse', action='store_true', help="use the runs an earlier call left in --runs")
    ap.add_argument('--check', action='store_true', help="only check the comparison on simulated predictions")
    ap.add_argument('--tag', default='', help="results as `uncertainty[_WORLD]_TAG` (a run of other settings)")
    a = ap.parse_args()
    if a.check: return check()
    torch.set_num_threads(1); warnings.filterwarnings('ignore')
    clips = 'all' if a.clips == 'all' else int(a.clips)
    runs, t0 = Path(a.runs)/a.world, time.perf_counter()
    data = dataset(a.world, a.videos)
    truth = pd.read_csv(data/'Difficulty.csv') if (data/'Difficulty.csv').exists() else None
    print(f"data: {a.videos} {a.world} videos ({time.perf_counter()-t0:.0f} s)", flush=True)
    jobs = [(f'seed{i}', i, False) for i in range(a.k)] + [('variance', 0, True)]
    models = {name: runs/name for name, *_ in jobs}
    todo = [(data, runs/name, a.steps, seed, var, a.config) for name, seed, var in jobs
            if not (a.reuse and (runs/name/RUN_STATE).is_file())]
    a.jobs = a.jobs or (1 if a.config else cpu_cores())
    t = time.perf_counter()     # one process per training, each on one core: the results do not depend on --jobs
    with ProcessPoolExecutor(max(1, min(a.jobs, len(todo) or 1)), mp_context=mp.get_context('spawn')) as ex:
        for out in ex.map(train, *zip(*todo)) if todo else []:
            print(f"trained {out.name}: {time.perf_counter()-t:.0f} s since the start of training", flush=True)
    ev = lambda m, s, **kw: (d := evaluate_model(load_model(find_model(models[m])), data, s, clips=clips, scale=1.0,
                                                 n_samples=a.samples, **kw))[~d.skipped].reset_index(drop=True)
    t = time.perf_counter()
    base = {s: ev('seed0', s, spreads=True) for s in ('VAL', 'TEST')}
    var = {s: ev('variance', s, spreads=True) for s in ('VAL', 'TEST')}
    tabs = {('seed0', m): tuple(base[s].assign(EF_std=base[s][f'spread_{m}']) for s in ('VAL', 'TEST'))
            for m in ('mc_dropout', 'clip_spread', 'constant')}
    tabs.update({('variance', m): tuple(var[s].assign(EF_std=var[s][f'spread_{m}']) for s in ('VAL', 'TEST'))
                 for m in ('variance', 'constant')})
    if a.k > 1:
        ens = {s: ensemble_table([base[s]] + [ev(f'seed{i}', s, method='constant') for i in range(1, a.k)])
               for s in ('VAL', 'TEST')}
        ens = {s: d[~d.skipped].reset_index(drop=True) for s, d in ens.items()}
        tabs[('ensemble', 'ensemble')] = (ens['VAL'], ens['TEST'])
        tabs[('ensemble', 'constant')] = tuple(ens[s].assign(EF_std=1.0) for s in ('VAL', 'TEST'))
    if truth is not None:      # the ceiling: the spread the truth file knows, plus the model's own error
        tr = truth.set_index('FileName')
        known = lambda d: np.hypot(tr.loc[d.FileName, 'label_sd'].values,
                                   np.where(tr.loc[d.FileName, 'arrhythmia'].values, tr.loc[d.FileName, 'beat_ef_sd'].values, 0))
        v = base['VAL']; own = np.sqrt(max(((v.EF - v.EF_pred)**2).mean() - (known(v)**2).mean(), 1.0))
        tabs[('oracle', 'truth')] = tuple(base[s].assign(EF_std=np.hypot(known(base[s]), own)) for s in ('VAL', 'TEST'))
    print(f"evaluated ({clips} clips): {time.perf_counter()-t:.0f} s", flush=True)
    df = compare(tabs, truth)
    fl = pd.read_csv(data/'FileList.csv')
    mean_mae = float((base['TEST'].EF - fl[fl.Split == 'TRAIN'].EF.mean()).abs().mean())  # always the TRAIN mean
    df['mae_ratio'] = df.mae/mean_mae
    best = best_method(df)
    df['aim'] = [meets_aim(r) for r in df.to_dict('records')]
    cols = ['model', 'method', 'mae', 'mae_ratio', 'coverage_80', 'coverage_90', 'coverage_95', 'mean_width', 'narrower', 'rho',
            'rho_lo', 'rho_hi', 'sel_area'] + [c for c in ('rho_label_sd', 'cov_q_poor', 'cov_q_middle', 'cov_q_good')
                                                if c in df] + ['aim']
    cats = ['model', 'method'] + [c for c in df if c.startswith('cov_') and not c.startswith('cov_q')]
    print(f"\n{a.videos} {a.world} videos ({df.n_val[0]} VAL, {df.n_test[0]} TEST), {a.steps} steps per run, "
          f"{clips} clips per video; widths and rho of the calibrated 90 % interval; mae_ratio: MAE over the MAE of "
          f"always predicting the TRAIN mean ({mean_mae:.2f})\n")
    print(df[cols].round(3).to_markdown(index=False))
    print('\n90 % coverage per true EF category (TEST):\n')
    print(df[cats].round(2).to_markdown(index=False))
    print(f"\nbest by the rule (narrower than its own constant band, highest rho): {best}; meets the aim: "
          f"{', '.join(f'{r.model}/{r.method}' for r in df.itertuples() if r.aim) or 'none'}")
    name = ('uncertainty' if a.world == 'realistic' else f'uncertainty_{a.world}') + (f'_{a.tag}' if a.tag else '')
    fig = RESULTS_DIR.parent.parent/'nbs'/'images'/f'{name}.png'     # shown by the docs, the README and 07_evaluate
    save_fig(plot(df, f'{a.world} world: calibrated 90 % intervals on TEST'), fig)
    res = {f"{r.model}_{r.method}_{k}": getattr(r, k) for r in df.itertuples()
           for k in ('rho', 'rho_lo', 'rho_hi', 'coverage_90', 'mean_width', 'sel_area', 'mae')}
    save_results(name, dict(res, best=best, n_test=int(df.n_test[0]), mean_mae=mean_mae, minutes=(time.perf_counter()-t0)/60),
                 df, args=vars(a), figure=f'nbs/images/{name}.png')
    print('RESULT best=' + best + ' ' + ' '.join(f"{r.model}/{r.method}: rho={r.rho:.3f} cov90={r.coverage_90:.3f} "
                                                 f"width={r.mean_width:.2f}" for r in df.itertuples()))

if __name__ == '__main__': main()
