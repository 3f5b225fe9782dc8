"""Benchmark: does masked-video pretraining (`echonet_ef_pretrain`) help EF fine-tuning on the synthetic data?

Run: `python bench/pretrain.py [--n-videos 160] [--ft-steps 150] [--pt-steps 150] [--out DIR]`
(about 10 minutes of wall time on 2 CPU cores shared with other jobs; 15 under a heavier load).
One synthetic dataset (`make_dataset`, seed 0, 64–100 frames per video; pretraining reads its TRAIN videos only,
without labels), four rows, the same fine-tuning recipe and number of steps for every row (the demo's: AdamW 1e-3,
batch 8, 112 px, 16 frames):
  (a) the demo's model (configs/demo.yaml: hidden 128, 4 layers, tubelet 16, `clip_stats` stem) from scratch;
  (b) a standard tiny VideoMAE (hidden 64, 2 layers, tubelet 2, plain frames, no stem) from scratch (its 392
      tokens per clip cost what the demo model's 49 tokens at hidden 128 and 4 layers cost, within ~2x);
  (c) (b) after `--pt-steps` steps of pretraining (mask ratio 0.9, sector-aware, normalised-pixel targets);
  (d) (a) after the same pretraining.
Each row's best-val-MAE checkpoint is scored on the TEST split (centre clip). The table gives TEST MAE, the MAE of
always predicting the TRAIN mean EF, their ratio (below 1: the model learnt something), and the wall time of
pretraining and fine-tuning. The last line is `RESULT mae_a=... mae_b=... mae_c=... mae_d=... mean_mae=...
pt_s_c=... pt_s_d=...`.
"""
import argparse, os, sys, time, json, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('WANDB_MODE', 'disabled')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
from pathlib import Path
import numpy as np, torch, transformers
from echonet_ef.core import load_config, config_dict
from echonet_ef.demo import demo_config
from echonet_ef.synthetic import make_dataset
from echonet_ef.data import read_filelist
from echonet_ef.model import load_model
from echonet_ef.evaluate import evaluate_model
from echonet_ef.train import Trainer
from echonet_ef.results import save_results
from echonet_ef.pretrain import PretrainTrainer

PLAIN = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, patch_size=16,
             tubelet_size=2)
DECODER = dict(decoder_hidden_size=64, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
               decoder_intermediate_size=256)

def row_overrides(row:str)->list:
    "The overrides of the demo config that make row `row`'s model"
    if row in ('a', 'd'): return []
    return [f'model.videomae={json.dumps(PLAIN)}', 'model.stem=none']

def common(a)->list:
    "Overrides shared by every run: steps, validation, workers and threads"
    return ['train.max_minutes=null', 'train.patience=100', 'data.num_workers=1', 'train.threads=1',
            'train.wandb=disabled', 'train.keep_last=1']

def pretrain(a, data:Path, row:str, out:Path)->tuple:
    "Pretrain row `row`'s model on the TRAIN videos; (the run folder, whose best checkpoint's encoder fine-tuning reads; seconds, first and last val loss)"
    vm = {**(PLAIN if row == 'c' else demo_config(str(data)).model.videomae), **DECODER}
    cfg = demo_config(str(data), [*row_overrides(row), *common(a), f'model.videomae={json.dumps(vm)}',
                                  f'train.max_steps={a.pt_steps}', f'train.val_every={max(1, a.pt_steps//3)}',
                                  'pretrain.mask_ratio=0.9', 'pretrain.sector_mask=true', 'optim.lr_head=1e-3',
                                  'optim.warmup_frac=0.1'])
    t0 = time.time()
    with PretrainTrainer(cfg, out, overwrite=True, quiet=a.quiet) as t: v0 = t.validate()['loss']; st = t.fit()
    vl = [h['val_loss'] for h in st['history'] if h.get('val_loss') is not None and h['val_loss'] == h['val_loss']]
    return out, time.time() - t0, v0, vl[-1]

def finetune(a, data:Path, row:str, out:Path, encoder=None)->tuple:
    "Fine-tune row `row`'s model (from `encoder` if given); (TEST MAE, seconds, best val MAE)"
    ov = [*row_overrides(row), *common(a), f'train.max_steps={a.ft_steps}', f'train.val_every={max(1, a.ft_steps//4)}']
    if encoder is not None: ov += [f'model.backbone={encoder}', 'model.pretrained=true']
    cfg = demo_config(str(data), ov)
    t0 = time.time()
    with Trainer(cfg, out, overwrite=True, quiet=a.quiet) as t: st = t.fit()
    secs = time.time() - t0
    pr = evaluate_model(load_model(out), data, 'TEST', clips=1, method='constant', scale=1.0)
    return float((pr.EF - pr.EF_pred).abs().mean()), secs, st['best_mae']

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n-videos', type=int, default=160); ap.add_argument('--ft-steps', type=int, default=150)
    ap.add_argument('--pt-steps', type=int, default=150)
    ap.add_argument('--out', default='/tmp/echonet_ef_bench_pretrain'); ap.add_argument('--quiet', action='store_true')
    a = ap.parse_args()
    transformers.utils.logging.disable_progress_bar()   # no 'Loading weights' bar in the table's output
    out = Path(a.out); data = out/'data'
    t0 = time.time()
    if not (data/'FileList.csv').exists(): make_dataset(data, n_videos=a.n_videos, seed=0, frames=(64, 100))
    df = read_filelist(data)
    mean_mae = float((df[df.Split == 'TEST'].EF - df[df.Split == 'TRAIN'].EF.mean()).abs().mean())
    print(f"dataset: {len(df)} videos ({(df.Split == 'TRAIN').sum()} TRAIN) in {time.time()-t0:.0f} s; "
          f"TEST MAE of the TRAIN mean: {mean_mae:.2f}", flush=True)
    rows = {}
    for row in 'abcd':
        enc, pt = None, None
        if row in 'cd':
            enc, secs, v0, v1 = pretrain(a, data, row, out/f'pretrain_{row}')
            pt = (secs, v0, v1)
            print(f"({row}) pretraining: {a.pt_steps} steps in {secs:.0f} s, val loss {v0:.4f} -> {v1:.4f}", flush=True)
        mae, secs, best = finetune(a, data, row, out/f'finetune_{row}', enc)
        rows[row] = dict(mae=mae, ft_s=secs, best_val=best, pt=pt)
        print(f"({row}) fine-tuning: {a.ft_steps} steps in {secs:.0f} s, best val MAE {best:.2f}, TEST MAE {mae:.2f}",
              flush=True)
    names = {'a': 'demo model (tubelet 16, clip_stats), from scratch',
             'b': 'tiny VideoMAE (tubelet 2, plain), from scratch',
             'c': '(b) after pretraining', 'd': '(a) after pretraining'}
    print(f"\n{'row':<52} {'TEST MAE':>8} {'/ mean':>7} {'pretrain':>9} {'fine-tune':>9}")
    for r, v in rows.items():
        pt = f"{v['pt'][0]:.0f} s" if v['pt'] else '-'
        print(f"({r}) {names[r]:<48} {v['mae']:>8.2f} {v['mae']/mean_mae:>7.2f} {pt:>9} {v['ft_s']:>7.0f} s")
    print(f"{'mean predictor (TRAIN mean EF)':<52} {mean_mae:>8.2f} {1:>7.2f}")
    print(f"total {time.time()-t0:.0f} s")
    save_results('pretrain', {**{f"mae_{r}": v['mae'] for r, v in rows.items()}, 'mean_mae': mean_mae},
                 [dict(row=r, name=names[r], test_mae=v['mae'], vs_mean=v['mae']/mean_mae, finetune_s=v['ft_s'],
                       pretrain_s=v['pt'][0] if v['pt'] else None) for r, v in rows.items()], args=vars(a))
    print('RESULT ' + ' '.join(f"mae_{r}={v['mae']:.2f}" for r, v in rows.items()) + f" mean_mae={mean_mae:.2f} "
          + ' '.join(f"pt_s_{r}={v['pt'][0]:.0f}" for r, v in rows.items() if v['pt']))

if __name__ == '__main__': main()
