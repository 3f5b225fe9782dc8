"""Benchmark: does masked-video pretraining on unlabelled echo videos help when labels are scarce?

Run: `python bench/pretrain.py [--labelled 150] [--unlabelled 500] [--test 250] [--seeds 2] [--curve 50,150,400]`
(about 45 minutes on one CPU core). The setting echo pretraining exists for: a synthetic EchoNet-format dataset of
the realistic world (`make_dataset(world='realistic')`, seed 2) whose TRAIN split has `--labelled` videos with an EF
and `--unlabelled` without one (FileList rows with an empty EF, as `echonet_ef_convert` writes for videos without a
label), a VAL split of `--val` (100) and a TEST split of `--test` labelled videos. The model is the demo's (configs/demo.yaml).
  pretraining: `echonet_ef_pretrain` on every TRAIN video, labelled or not (mask ratio 0.75: with tubelet 16 each
      token is one patch over the whole clip, image-MAE territory), until its masked-patch loss has clearly fallen
      below 1.0, the loss of predicting each patch's mean (targets are normalised per patch);
  scratch arm: fine-tuning from random weights at the demo's rates (1e-3);
  pretrained arm: fine-tuning from the pretrained encoder with layer decay 0.75 and a lower backbone rate (3e-4);
  probes: the same two encoders frozen, only the head trained (how much EF the features alone carry).
Both arms, and both probes, run with `--seeds` fine-tuning seeds; every run has the same steps and TEST videos.
The difference is paired: per TEST video |error| pretrained - |error| scratch, with a bootstrap 95 % CI (per seed and
for the seeds' mean prediction). The label-efficiency curve repeats both arms (seed 0) at each `--curve` count.
Writes `bench/results/pretrain.json` and the curve `nbs/images/pretrain_label_efficiency.png`.
"""
import argparse, json, os, time, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('WANDB_MODE', 'disabled')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
from pathlib import Path
import numpy as np, pandas as pd, torch, transformers
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from echonet_ef.core import find_model
from echonet_ef.data import cpu_cores
from echonet_ef.demo import demo_config
from echonet_ef.synthetic import make_dataset
from echonet_ef.test_utils import cached
from echonet_ef.model import load_model
from echonet_ef.evaluate import evaluate_model, save_fig
from echonet_ef.train import Trainer
from echonet_ef.pretrain import PretrainTrainer
from echonet_ef.results import save_results, RESULTS_DIR

DECODER = dict(decoder_hidden_size=64, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
               decoder_intermediate_size=256)
COMMON = ['train.max_minutes=null', 'train.patience=1000', 'data.num_workers=0', 'train.threads=1',
          'train.wandb=disabled', 'train.keep_last=1']

def log(msg): print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

def paired(a, b, n:int=2000, seed:int=0)->dict:
    "Mean of the paired differences `a - b` with a bootstrap 95 % CI over videos"
    d, rng = np.asarray(a, float) - np.asarray(b, float), np.random.default_rng(seed)
    m = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(n)])
    return dict(diff=float(d.mean()), lo=float(np.quantile(m, 0.025)), hi=float(np.quantile(m, 0.975)), n=len(d))

def dataset(a)->Path:
    "The cached dataset: Videos/, the full labels in FileList_all.csv, and one folder per labelled count"
    n = a.labelled + a.unlabelled + a.val + a.test
    def build(d):
        fl = make_dataset(d, n_videos=n, seed=2, world='realistic', workers=cpu_cores())
        fl['Split'] = np.random.default_rng(0).permutation(['TRAIN']*(a.labelled + a.unlabelled) + ['VAL']*a.val
                                                           + ['TEST']*a.test)
        fl.to_csv(Path(d)/'FileList_all.csv', index=False)
    return cached(f'bench-pretrain-{a.labelled}-{a.unlabelled}-{a.val}-{a.test}', build, key='v2')

def labelled_view(data:Path, out:Path, k:int)->Path:
    "A dataset folder whose FileList labels only the first `k` TRAIN videos (the rest keep an empty EF)"
    fl = pd.read_csv(data/'FileList_all.csv')
    tr = fl.index[fl.Split == 'TRAIN']
    fl.loc[tr[k:], 'EF'] = np.nan
    out.mkdir(parents=True, exist_ok=True)
    if not (out/'Videos').exists(): (out/'Videos').symlink_to(data/'Videos')
    fl.to_csv(out/'FileList.csv', index=False)
    return out

def pretrain(a, root:Path, out:Path)->dict:
    "Pretrain the demo's encoder on every TRAIN video of `root`; the run folder and its validation losses"
    vm = {**demo_config(str(root)).model.videomae, **DECODER}
    cfg = demo_config(str(root), [*COMMON, f'model.videomae={json.dumps(vm)}', f'train.max_steps={a.pt_steps}',
                                  f'train.val_every={max(1, a.pt_steps//5)}', 'pretrain.mask_ratio=0.75',
                                  'pretrain.sector_mask=true', 'data.batch_size=16', 'optim.lr_backbone=1e-3',
                                  'optim.lr_head=1e-3', 'optim.warmup_frac=0.05', 'train.seed=0'])
    with PretrainTrainer(cfg, out, overwrite=True, quiet=True) as t:
        v0 = t.validate()['loss']; st = t.fit()
    vl = [h['val_loss'] for h in st['history'] if h.get('val_loss') is not None and h['val_loss'] == h['val_loss']]
    return dict(run=out, loss_start=float(v0), losses=[float(v) for v in vl], loss_end=float(vl[-1]))

def finetune(a, root:Path, out:Path, seed:int, encoder=None, probe:bool=False)->pd.DataFrame:
    "Fine-tune (or probe) the demo's model on `root`'s labelled TRAIN videos; its TEST predictions"
    ov = [*COMMON, f'train.max_steps={a.ft_steps}', f'train.val_every={max(1, a.ft_steps//4)}', f'train.seed={seed}']
    if encoder is not None:
        ov += [f'model.backbone={encoder}', 'model.pretrained=true', 'optim.lr_backbone=3e-4', 'optim.layer_decay=0.75']
    if probe: ov += [f'model.freeze_backbone_steps={a.ft_steps + 1}']
    with Trainer(demo_config(str(root), ov), out, overwrite=True, quiet=True) as t: t.fit()
    pr = evaluate_model(load_model(find_model(out)), root, 'TEST', clips=4, method='constant', scale=1.0)
    return pr[~pr.skipped].set_index('FileName')

def plot_curve(curve:pd.DataFrame, mean_mae:float):
    "TEST MAE against the labelled videos, from scratch and after pretraining"
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for arm, c in (('scratch', 'C0'), ('pretrained', 'C1')):
        d = curve[curve.arm == arm].groupby('labelled').mae.agg(['mean', 'min', 'max']).reset_index()
        ax.errorbar(d.labelled, d['mean'], yerr=[d['mean'] - d['min'], d['max'] - d['mean']], fmt='o-', color=c,
                    capsize=3, label=arm)
    ax.axhline(mean_mae, color='0.6', ls=':', label='mean predictor')
    ax.set(xlabel='labelled TRAIN videos', ylabel='TEST MAE (EF points)', xscale='log',
           title='label efficiency (synthetic, realistic world)')
    ax.set_xticks(sorted(curve.labelled.unique())); ax.set_xticklabels(sorted(curve.labelled.unique())); ax.minorticks_off()
    ax.legend(fontsize=8); fig.tight_layout()
    return fig

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--labelled', type=int, default=150); ap.add_argument('--unlabelled', type=int, default=500)
    ap.add_argument('--test', type=int, default=250); ap.add_argument('--val', type=int, default=100)
    ap.add_argument('--seeds', type=int, default=2)
    ap.add_argument('--pt-steps', type=int, default=1000); ap.add_argument('--ft-steps', type=int, default=600)
    ap.add_argument('--curve', default='50,150,400')
    ap.add_argument('--runs', default='/tmp/echonet_ef_bench_pretrain')
    a = ap.parse_args()
    torch.set_num_threads(1); warnings.filterwarnings('ignore'); transformers.utils.logging.disable_progress_bar()
    t0, runs = time.time(), Path(a.runs)
    data = dataset(a)
    full = pd.read_csv(data/'FileList_all.csv')
    test = full[full.Split == 'TEST'].set_index('FileName').EF
    views = {k: labelled_view(data, runs/f'data_{k}', k) for k in sorted({a.labelled, *map(int, a.curve.split(','))})}
    mean_mae = float((test - full[full.Split == 'TRAIN'].EF.iloc[:a.labelled].mean()).abs().mean())
    log(f"dataset: {len(full)} videos, TRAIN {a.labelled} labelled + {a.unlabelled} unlabelled, TEST {len(test)}; "
        f"TEST MAE of the labelled TRAIN mean {mean_mae:.2f}")
    pt = pretrain(a, views[a.labelled], runs/'pretrain')
    log(f"pretraining: {a.pt_steps} steps, masked-patch loss {pt['loss_start']:.3f} -> {pt['loss_end']:.3f} "
        f"(1.0: each patch's mean)  [{', '.join(f'{v:.3f}' for v in pt['losses'])}]")
    err = lambda pr: (pr.EF - pr.EF_pred).abs()
    preds, rows = {}, []
    jobs = [(arm, a.labelled, s, False) for s in range(a.seeds) for arm in ('scratch', 'pretrained')]
    jobs += [(arm, a.labelled, s, True) for s in range(a.seeds) for arm in ('scratch', 'pretrained')]
    jobs += [(arm, k, 0, False) for k in views if k != a.labelled for arm in ('scratch', 'pretrained')]
    for arm, k, s, probe in jobs:
        t = time.time()
        name = f"{'probe' if probe else 'ft'}_{arm}_{k}_s{s}"
        pr = preds[name] = finetune(a, views[k], runs/name, s, pt['run'] if arm == 'pretrained' else None, probe)
        rows.append(dict(run=name, arm=arm, labelled=k, seed=s, probe=probe, mae=float(err(pr).mean()),
                         seconds=time.time() - t))
        log(f"{name}: TEST MAE {rows[-1]['mae']:.2f} ({rows[-1]['seconds']:.0f} s)")
    df = pd.DataFrame(rows)
    cmp = {}
    for kind in ('ft', 'probe'):
        for s in range(a.seeds):
            p, c = preds[f'{kind}_pretrained_{a.labelled}_s{s}'], preds[f'{kind}_scratch_{a.labelled}_s{s}']
            cmp[f'{kind}_s{s}'] = paired(err(p), err(c.loc[p.index]))
        mean = lambda arm: pd.concat([preds[f'{kind}_{arm}_{a.labelled}_s{s}'].EF_pred for s in range(a.seeds)], axis=1).mean(1)
        mp, mc = mean('pretrained'), mean('scratch')
        cmp[f'{kind}_mean'] = paired((test[mp.index] - mp).abs(), (test[mp.index] - mc[mp.index]).abs())
    helps = all(cmp[f'ft_s{s}']['hi'] < 0 for s in range(a.seeds))
    hurts = all(cmp[f'ft_s{s}']['lo'] > 0 for s in range(a.seeds))
    verdict = 'helps' if helps else 'hurts' if hurts else 'no effect beyond noise'
    print(f"\n{len(test)} TEST videos; {a.labelled} labelled + {a.unlabelled} unlabelled TRAIN videos; "
          f"{a.ft_steps} fine-tuning steps, {a.pt_steps} pretraining steps\n")
    print(df.round(3).to_markdown(index=False))
    print("\npaired difference of |error| (pretrained - scratch; negative: pretraining helps), bootstrap 95 % CI:\n")
    for k, v in cmp.items(): print(f"  {k:<12} {v['diff']:+.2f} [{v['lo']:+.2f}, {v['hi']:+.2f}]")
    print(f"\npretraining {verdict} (fine-tuned, {a.labelled} labelled videos, every seed)")
    save_fig(plot_curve(df[~df.probe], mean_mae), RESULTS_DIR.parent.parent/'nbs'/'images'/'pretrain_label_efficiency.png')
    save_results('pretrain', dict(verdict=verdict, mean_mae=mean_mae, pt_loss_start=pt['loss_start'],
                                  pt_loss_end=pt['loss_end'], pt_losses=pt['losses'],
                                  **{f'{k}_{m}': v[m] for k, v in cmp.items() for m in ('diff', 'lo', 'hi')},
                                  n_test=len(test), minutes=(time.time() - t0)/60), df, args=vars(a),
                 figure='nbs/images/pretrain_label_efficiency.png')
    print('RESULT verdict=' + verdict.replace(' ', '_') + ' ' + ' '.join(f"{k}={v['diff']:+.2f}" for k, v in cmp.items()))

if __name__ == '__main__': main()
