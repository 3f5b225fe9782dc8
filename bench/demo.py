"""Benchmark: the CPU demo end to end, as a user runs it, with its wall time and TEST metrics.

Run: `python bench/demo.py [--out DIR] [--n_videos 1200] [--seed 0]`.
It runs `echonet_ef_demo --out DIR` in a subprocess (the command the README gives, in a fresh output folder: default a
temporary one, removed afterwards) and times it from start to exit. It then reads the demo's `metrics.json`: TEST MAE
against the mean predictor (always predicting the training mean EF), RMSE, R², the AUC for EF < 40 %, and the 90 %
interval's coverage and mean width, Spearman's rho of its spread against |error| and the selective-prediction area
(`interval_quality`). Writes `bench/results/demo.json`; the last line is `RESULT minutes=... mae=...`.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
from echonet_ef.results import save_results

KEYS = ('mae', 'baseline_mae', 'mae_ratio', 'rmse', 'r2', 'auc_ef40', 'coverage', 'mean_width', 'spearman_width_error',
        'selective_area', 'selective_mae_80', 'method', 'train_steps', 'train_minutes', 'total_minutes', 'n')

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', help='output folder (must not exist); default: a temporary folder, removed afterwards')
    ap.add_argument('--n_videos', type=int, default=1200); ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    tmp = None if a.out else tempfile.mkdtemp(prefix='echonet_demo_bench.')
    out = Path(a.out or tmp)/('' if a.out else 'demo_run')
    try:
        cmd = ['echonet_ef_demo', '--out', str(out), '--n_videos', str(a.n_videos), '--seed', str(a.seed), '--quiet']
        env = dict(os.environ, HF_HUB_OFFLINE='1', WANDB_MODE='disabled')
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env)
        minutes = (time.perf_counter() - t0)/60
        if r.returncode: sys.exit(f"error: echonet_ef_demo exited with {r.returncode}")
        m = json.loads((out/'metrics.json').read_text())
        res = dict(minutes=minutes, **{k: m.get(k) for k in KEYS if k in m})
        print(json.dumps(res, indent=1))
        save_results('demo', res, cores=os.cpu_count(), loadavg=os.getloadavg(), args=vars(a))
        print('RESULT ' + ' '.join(f"{k}={v:.3f}" for k, v in res.items() if isinstance(v, (int, float))))
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': main()
