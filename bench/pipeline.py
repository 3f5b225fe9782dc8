"""Pipeline profile of the CPU demo (not a timed test): where the wall time of a short demo-config training run goes.

Part 1 runs `--steps` optimizer steps of the demo config (configs/demo.yaml: tiny VideoMAE, 112 px, batch 8) on a
synthetic dataset with `num_workers=0`, so that data loading happens in this process and can be timed: decoding
(`sample_clip`, i.e. `read_frames`), the rest of the loader (dataset, sampler, collate), the transform of the uint8
clips into model input inside the step (`DeviceClipTransform`), forward (+ loss), backward, optimizer (grad clipping, AdamW, schedule) and the validation passes (every `--val-every`
steps). Each step is the Trainer's own (`Trainer._micro_batches`, `_forward_loss`, `validate`), split into its parts.

Part 2 sets the two rates side by side at the configured worker count: the loader's clips/s (the TRAIN loader alone,
`num_workers` from the config) and the model's consumption rate (clips/s of the training steps alone, from part 1),
then a short training run with those workers that measures how long each step waits for its batch (the loader is
the bottleneck when that wait is a large share of the step).

    python bench/pipeline.py                     # ~2-3 min on 2 cores
    python bench/pipeline.py --steps 20 --videos 40

It prints a table and ends with one line `RESULT key=value ...`.
"""
import argparse, json, os, shutil, statistics, tempfile, time, warnings
from collections import defaultdict
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('WANDB_MODE', 'disabled')
import numpy as np, torch
from transformers.utils import logging as hf_logging
import echonet_ef.data as D
from echonet_ef.core import load_config
from echonet_ef.results import save_results
from echonet_ef.data import get_dataloaders
from echonet_ef.synthetic import make_dataset
from echonet_ef.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
T, PHASE = defaultdict(float), ['train']


def timed(key, f):
    "`f`, adding its wall time to `T[(phase, key)]`"
    def g(*a, **k):
        t = time.perf_counter()
        try: return f(*a, **k)
        finally: T[(PHASE[0], key)] += time.perf_counter() - t
    return g

# EchoDataset.__getitem__ calls the module's `sample_clip`; the step's `model_inputs` calls DeviceClipTransform
D.sample_clip = timed('decode', D.sample_clip)
D.DeviceClipTransform.__call__ = timed('transform', D.DeviceClipTransform.__call__)


def trainer(cfg, out):
    t = Trainer(cfg, out, overwrite=True, quiet=True)
    t.model.train()
    return t, t._micro_batches()


def opt_step(t):
    "The optimizer part of `Trainer.train_step` (fp32, no GradScaler)"
    torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.optim.clip_norm)
    t.opt.step(); t.opt.zero_grad(set_to_none=True); t.sched.step(); t.state['step'] += 1


def profile(cfg, out, steps, val_every):
    "Seconds spent in each phase of `steps` optimizer steps with in-process loading"
    t, batches = trainer(cfg, out)
    S, n_val = defaultdict(float), 0
    t0 = time.perf_counter()
    for i in range(steps):
        a = time.perf_counter(); b = next(batches)
        c = time.perf_counter(); loss = t._forward_loss(b)
        d = time.perf_counter(); loss.backward()
        e = time.perf_counter(); opt_step(t)
        f = time.perf_counter()
        S['data'] += c - a; S['forward'] += d - c; S['backward'] += e - d; S['optimizer'] += f - e
        if (i+1) % val_every == 0 or i+1 == steps:
            PHASE[0] = 'val'; g = time.perf_counter(); m = t.validate(); S['evaluation'] += time.perf_counter() - g
            PHASE[0] = 'train'; n_val += 1
    S['wall'] = time.perf_counter() - t0
    return S, n_val, float(loss), m


def loader_rate(cfg, n_batches):
    "Clips/s of the TRAIN loader alone at `cfg.num_workers`, after one untimed batch (worker start-up)"
    dl = get_dataloaders(cfg, ('TRAIN',), seed=0)['TRAIN']
    n, it, ep = 0, iter(dl), 0
    next(it); t = time.perf_counter()
    while n < n_batches*cfg.batch_size:
        try: n += len(next(it)['pixel_values'])
        except StopIteration: ep += 1; dl.sampler.set_epoch(ep); dl.dataset.epoch = ep; it = iter(dl)
    return n / (time.perf_counter() - t)


def stall(cfg, out, steps):
    "Median seconds a training step waits for its batch, and the median step, with the configured workers"
    t, batches = trainer(cfg, out)
    next(batches)   # worker start-up
    waits, totals = [], []
    for _ in range(steps):
        a = time.perf_counter(); b = next(batches)
        c = time.perf_counter(); t._forward_loss(b).backward(); opt_step(t)
        waits.append(c - a); totals.append(time.perf_counter() - a)
    return statistics.median(waits), statistics.median(totals), sum(waits)/sum(totals)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=str(ROOT/'configs'/'demo.yaml'))
    p.add_argument('--data', help='synthetic dataset folder (made here if missing; default: a temporary folder)')
    p.add_argument('--videos', type=int, default=60)
    p.add_argument('--steps', type=int, default=50, help='optimizer steps profiled')
    p.add_argument('--val-every', type=int, default=25)
    p.add_argument('--stall-steps', type=int, default=20, help='steps of the run with the configured workers (0 skips)')
    p.add_argument('--workers', type=int, default=None, help="loader workers for part 2 (default: the config's)")
    p.add_argument('--out', help='folder to write pipeline.json into')
    a = p.parse_args()
    hf_logging.set_verbosity_error(); warnings.filterwarnings('ignore')
    tmp = tempfile.mkdtemp(prefix='echo_pipe_')
    try:
        data = a.data or os.path.join(tmp, 'data')
        t = time.perf_counter()
        if not (Path(data)/'FileList.csv').exists(): make_dataset(data, a.videos, seed=0)
        cfg = load_config(a.config, [f'data.root={data}', 'data.num_workers=0', 'train.wandb=disabled', f'train.max_steps={a.steps}'])
        workers = load_config(a.config).data.num_workers if a.workers is None else a.workers
        print(f"dataset: {data} ({time.perf_counter()-t:.0f} s to make); config {Path(a.config).name}: {cfg.data.size} px, "
              f"batch {cfg.data.batch_size}, {cfg.data.clip_len} frames; torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
        S, n_val, loss, m = profile(cfg, os.path.join(tmp, 'run0'), a.steps, a.val_every)
        dec, tfm = T[('train', 'decode')], T[('train', 'transform')]
        rows = [('decode (sample_clip/read_frames)', dec), ('loader other (dataset, collate)', S['data'] - dec),
                ('transform in the step (DeviceClipTransform)', tfm), ('forward (+ loss)', S['forward'] - tfm),
                ('backward', S['backward']), ('optimizer (clip, AdamW, schedule)', S['optimizer']),
                (f'evaluation ({n_val} val passes)', S['evaluation'])]
        rows.append(('other', S['wall'] - sum(s for _, s in rows)))
        print(f"\n{a.steps} steps, num_workers=0 (loading in-process), wall {S['wall']:.1f} s, last train loss {loss:.1f}, val MAE {m['mae']:.2f}")
        print(f"{'phase':44s} {'seconds':>8s} {'fraction':>8s}")
        for k, s in rows: print(f"{k:44s} {s:8.2f} {s/S['wall']:8.1%}")
        vd, vt = T[('val', 'decode')], T[('val', 'transform')]
        print(f"{'  of evaluation: decode / transform':44s} {vd:8.2f} {vt:8.2f}   model + metrics {S['evaluation']-vd-vt:.2f}")
        bs = cfg.data.batch_size
        model_rate = a.steps*bs / (S['forward'] + S['backward'] + S['optimizer'])
        inproc_rate = a.steps*bs / S['data']
        lcfg = load_config(a.config, [f'data.root={data}', f'data.num_workers={workers}']).data
        lrate = loader_rate(lcfg, max(10, a.steps//2))
        print(f"\nrates, clips/s ({cfg.data.size} px, batch {bs}):")
        print(f"  {f'loader, {workers} worker(s), alone':38s} {lrate:8.1f}")
        print(f"  {'loader, in-process (from the profile)':38s} {inproc_rate:8.1f}")
        print(f"  {'model, training steps alone':38s} {model_rate:8.1f}")
        print(f"  {'loader / model':38s} {lrate/model_rate:8.2f}  ({'loader faster' if lrate > model_rate else 'LOADER IS THE BOTTLENECK'})")
        res = dict(decode_frac=dec/S['wall'], transform_frac=tfm/S['wall'], loader_frac=S['data']/S['wall'],
                   forward_frac=(S['forward']-tfm)/S['wall'], backward_frac=S['backward']/S['wall'],
                   optimizer_frac=S['optimizer']/S['wall'], eval_frac=S['evaluation']/S['wall'],
                   loader_clips_s=lrate, model_clips_s=model_rate, loader_vs_model=lrate/model_rate)
        if a.stall_steps:
            scfg = load_config(a.config, [f'data.root={data}', f'data.num_workers={workers}', 'train.wandb=disabled'])
            w, tot, frac = stall(scfg, os.path.join(tmp, 'run1'), a.stall_steps)
            print(f"  training with {workers} worker(s): median step {tot*1e3:.0f} ms, of which waiting for data {w*1e3:.0f} ms "
                  f"({frac:.1%} of step time over {a.stall_steps} steps)")
            res['stall_frac'] = frac
        if a.out:
            o = Path(a.out); o.mkdir(parents=True, exist_ok=True)
            (o/'pipeline.json').write_text(json.dumps(dict(phases=dict(rows), wall=S['wall'], steps=a.steps, workers=workers,
                                                           loadavg=os.getloadavg(), result=res), indent=1))
        save_results('pipeline', res, [dict(phase=k, s=v, frac=v/S['wall']) for k, v in rows], steps=a.steps, workers=workers)
        print('RESULT ' + ' '.join(f"{k}={v:.3f}" if k.endswith('frac') else f"{k}={v:.2f}" for k, v in res.items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': main()
