"""Training-step benchmark (not a timed test): optimizer steps/s, samples/s and peak memory of the tiny and base models.

Grid: model (tiny = the demo config's VideoMAE, hidden 128, 4 layers, tubelet 16; base = `VideoMAEConfig()` defaults,
random weights, no download) x size (112, 224) x precision (fp32 and bf16 autocast on the CPU; fp32, fp16 autocast +
GradScaler and bf16 autocast on the GPU) x mode (eager, `torch.compile`). A step is the Trainer's: autocast forward,
weighted-MSE loss, backward, grad clipping, AdamW with the two parameter groups. Random clips, 16 frames. Every figure is
the median of `--steps` timed steps after warm-up steps (1 eager, 2 compiled). Peak memory is
`torch.cuda.max_memory_allocated` on the GPU and the peak resident set size (sampled every 10 ms) on the CPU.
Ratios are samples/s against fp32-eager-224 of the same model, measured in the same run.

    python bench/train_step.py                                   # CPU: ~4-6 min on 2 cores
    python bench/train_step.py --models tiny --no-compile        # seconds
    python bench/train_step.py --device cuda --models base --find-max-batch --sdpa-vs-eager --out bench/results/x

It prints a table and ends with one line `RESULT key=value ...`.
"""
import argparse, gc, json, os, platform, resource, statistics, threading, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch, psutil
from transformers.utils import logging as hf_logging
from echonet_ef.core import ModelConfig, OptimConfig, LossConfig, load_config, set_seed, get_device
from echonet_ef.model import build_model
from echonet_ef.loss import get_loss
from echonet_ef.train import param_groups
from echonet_ef.results import save_results

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def model_cfg(name, attn='sdpa'):
    "The `ModelConfig` of `name` (tiny: configs/demo.yaml's model; base: VideoMAE-base, random weights)"
    if name == 'tiny': m = load_config(ROOT/'configs'/'demo.yaml').model
    elif name == 'base': m = ModelConfig(backbone=None, pretrained=False, videomae={})
    else: raise SystemExit(f"error: unknown model {name!r} (tiny or base)")
    m.attn_implementation = attn
    return m


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


class PeakRSS:
    "Peak resident set size of this process, sampled every `dt` s by a thread while inside the `with` block"
    def __init__(self, dt=0.01): self.dt, self.peak, self._stop = dt, 0, threading.Event()
    def _run(self):
        p = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, p.memory_info().rss); self._stop.wait(self.dt)
    def __enter__(self):
        self.peak = psutil.Process().memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
    def __exit__(self, *a): self._stop.set(); self._t.join()


def make_step(model, dev, prec, compiled):
    "A Trainer-like optimizer step `f(x, y) -> loss` for `model` at precision `prec`"
    opt = torch.optim.AdamW(param_groups(model, OptimConfig(lr_backbone=1e-5, lr_head=1e-4)))
    scaler = torch.amp.GradScaler('cuda') if prec == 'fp16' else None
    loss_fn, dtype = get_loss(LossConfig()), DTYPES[prec]
    fwd = torch.compile(model) if compiled else model
    def f(x, y):
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(fwd(x).float(), y)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler: scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler: scaler.step(opt); scaler.update()
        else: opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return f


def batch(bs, size, dev):
    return torch.randn(bs, 16, 3, size, size, device=dev), torch.rand(bs, device=dev)*60 + 20


def measure(name, size, prec, mode, bs, steps, dev=None, attn='sdpa'):
    "One grid point: a dict of steps/s, samples/s, ms/step and peak memory (MB), or with `error` when it failed"
    row = dict(model=name, size=size, prec=prec, mode=mode, attn=attn, batch=bs, steps=steps)
    gc.collect()
    if dev.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
    model = f = x = y = None
    try:
        set_seed(0)
        model = build_model(model_cfg(name, attn), image_size=size).to(dev).train()
        f = make_step(model, dev, prec, mode == 'compile')
        x, y = batch(bs, size, dev)
        t = time.perf_counter()
        with PeakRSS() as rss:
            for _ in range(2 if mode == 'compile' else 1): f(x, y)
            sync(dev); row['warmup_s'] = time.perf_counter() - t
            ts = []
            for _ in range(steps):
                t = time.perf_counter(); loss = f(x, y); sync(dev); ts.append(time.perf_counter() - t)
        s = statistics.median(ts)
        row.update(ms_step=1e3*s, steps_s=1/s, samples_s=bs/s, loss=float(loss),
                   peak_mb=(torch.cuda.max_memory_allocated(dev) if dev.type == 'cuda' else rss.peak)/2**20)
    except Exception as e:   # a compile failure or OOM is a result, not a crash
        msg = str(e).strip().splitlines()
        row['error'] = f"{type(e).__name__}: {msg[0][:160] if msg else ''}"
    finally:
        model = f = x = y = None; gc.collect()
        if dev.type == 'cuda': torch.cuda.empty_cache()
        if mode == 'compile': torch._dynamo.reset()
    show(row)
    return row


def show(r):
    head = f"{r['model']:5s} {r['size']:4d} {r['prec']:5s} {r['mode']:8s} {r['attn']:6s} {r['batch']:5d}"
    if 'error' in r: print(f"{head}   {'SKIPPED' if r['error'].startswith('skipped') else 'FAILED'}  {r['error']}", flush=True)
    else: print(f"{head} {r['steps_s']:8.3f} {r['samples_s']:9.2f} {r['ms_step']:9.0f} {r['peak_mb']:9.0f}"
                f" {r.get('vs_ref', float('nan')):7.2f}  (warm-up {r['warmup_s']:.1f} s)", flush=True)

HEADER = f"{'model':5s} {'size':>4s} {'prec':5s} {'mode':8s} {'attn':6s} {'batch':>5s} {'steps/s':>8s} {'samples/s':>9s} {'ms/step':>9s} {'peak MB':>9s} {'vs ref':>7s}"


def fits(name, size, prec, bs, dev):
    "Whether one training step of `name` at batch `bs` fits in GPU memory"
    r = measure(name, size, prec, 'eager', bs, 1, dev=dev)
    if 'error' in r and 'OutOfMemory' not in r['error'] and 'out of memory' not in r['error']: raise RuntimeError(r['error'])
    return 'error' not in r


def max_batch(name, size, prec, dev, start=16, limit=4096):
    "Largest batch that fits: double from `start` until OOM, then bisect (to within 1/8)"
    lo, hi = 0, None
    bs = start
    while bs <= limit:
        if fits(name, size, prec, bs, dev): lo, bs = bs, bs*2
        else: hi = bs; break
    if hi is None: return lo
    while hi - lo > max(1, lo//8):
        mid = (lo + hi)//2
        if fits(name, size, prec, mid, dev): lo = mid
        else: hi = mid
    return lo


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu', help='cpu or cuda')
    p.add_argument('--models', default='tiny,base')
    p.add_argument('--sizes', default='112,224')
    p.add_argument('--precisions', default=None, help='default: fp32,bf16 on the CPU; fp32,fp16,bf16 on the GPU')
    p.add_argument('--batch', type=int, default=None, help='default: tiny 8, base 1 on the CPU; tiny 32, base 8 on the GPU')
    p.add_argument('--steps', type=int, default=None, help='timed steps; default: tiny 5 / base 2 on the CPU, 10 on the GPU')
    p.add_argument('--compile', action=argparse.BooleanOptionalAction, default=None,
                   help='also time torch.compile (default: on, except for base on the CPU)')
    p.add_argument('--compile-precisions', default=None, help='precisions timed compiled (default: bf16 on the GPU, fp32 on the CPU)')
    p.add_argument('--time-budget', type=float, default=None, help='seconds; measurements left when it is spent are skipped')
    p.add_argument('--find-max-batch', action='store_true', help='GPU: largest batch of base at 224 and 112 (bf16 autocast)')
    p.add_argument('--sdpa-vs-eager', action='store_true', help="also time attn_implementation='eager' at the largest size")
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: torch default)')
    p.add_argument('--out', help='folder to write train_step.json into')
    a = p.parse_args()
    hf_logging.set_verbosity_error(); warnings.filterwarnings('ignore')
    if a.threads: torch.set_num_threads(a.threads)
    dev = get_device(a.device)
    gpu = dev.type == 'cuda'
    models, sizes = a.models.split(','), sorted({int(s) for s in a.sizes.split(',')}, reverse=True)
    precs = a.precisions.split(',') if a.precisions else (['fp32', 'fp16', 'bf16'] if gpu else ['fp32', 'bf16'])
    if 'fp16' in precs and not gpu: raise SystemExit("error: fp16 autocast with a GradScaler needs a CUDA GPU; use bf16 on the CPU")
    bs = lambda m: a.batch or ({'tiny': 32, 'base': 8} if gpu else {'tiny': 8, 'base': 1})[m]
    steps = lambda m: a.steps or (10 if gpu else {'tiny': 5, 'base': 2}[m])
    cprecs = a.compile_precisions.split(',') if a.compile_precisions else (['bf16'] if gpu else ['fp32'])
    compiles = lambda m, prec: (a.compile if a.compile is not None else (gpu or m != 'base')) and prec in cprecs
    name = torch.cuda.get_device_name(dev) if gpu else f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    meta = dict(device=name, torch=torch.__version__, cpus=os.cpu_count(), loadavg=os.getloadavg(), date=time.strftime('%Y-%m-%d %H:%M'))
    print(f"device: {name}; torch {torch.__version__}; {os.cpu_count()} CPUs, load average {meta['loadavg'][0]:.1f}; 16 frames, random clips")
    print(HEADER)
    t0, rows, maxb = time.perf_counter(), [], {}
    left = lambda: a.time_budget is None or time.perf_counter() - t0 < a.time_budget
    def run(*args, **kw):
        if not left():
            r = dict(zip(('model', 'size', 'prec', 'mode'), args[:4]), attn=kw.get('attn', 'sdpa'), batch=args[4], error='skipped: --time-budget spent')
            show(r)
        else: r = measure(*args, dev=dev, **kw)
        rows.append(r)
        if a.out: save(a.out, meta, rows, maxb, result(rows, models, precs, maxb, a.sdpa_vs_eager))
    # most informative first, so that a --time-budget cuts the least useful: the eager grid, attention, max batch, compile
    for m in models:
        for size in sizes:
            for prec in precs: run(m, size, prec, 'eager', bs(m), steps(m))
    if a.sdpa_vs_eager:
        for m in models:
            for prec in precs: run(m, sizes[0], prec, 'eager', bs(m), steps(m), attn='eager')
    if a.find_max_batch:
        if not gpu: print("--find-max-batch: skipped (needs a GPU)")
        else:
            amp = 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
            print(f"\nlargest batch of base that fits ({amp} autocast, AdamW, {torch.cuda.get_device_properties(dev).total_memory/2**30:.0f} GiB):")
            for size in (224, 112):
                if not left(): print(f"  base {size}px: skipped (--time-budget spent)"); continue
                maxb[size] = max_batch('base', size, amp, dev)
                print(f"  base {size}px: batch {maxb[size]}", flush=True)
    print(HEADER)
    for m in models:
        for size in sizes:
            for prec in precs:
                if compiles(m, prec): run(m, size, prec, 'compile', bs(m), steps(m))
    for m in models:
        ref = next((r['samples_s'] for r in rows if (r['model'], r['size'], r['prec'], r['mode'], r['attn']) == (m, 224, 'fp32', 'eager', 'sdpa')
                    and 'samples_s' in r), None)
        for r in rows:
            if r['model'] == m and ref and 'samples_s' in r: r['vs_ref'] = r['samples_s']/ref
    print(f"\n{HEADER}   (ref: fp32 eager 224 of the same model)")
    for r in rows: show(r)
    kv = result(rows, models, precs, maxb, a.sdpa_vs_eager)
    if a.out: save(a.out, meta, rows, maxb, kv)
    save_results('train_step' + ('_gpu' if a.device == 'cuda' else ''), {k: float(v) for k, v in kv.items()}, rows,
                 max_batch=maxb, meta=meta)
    print('RESULT ' + ' '.join(f"{k}={v}" for k, v in kv.items()))


def save(out, meta, rows, maxb, kv=None):
    "Write the results so far to `out`/train_step.json (after every row: a killed run keeps what it measured)"
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    (out/'train_step.json').write_text(json.dumps(dict(meta=meta, rows=rows, max_batch=maxb, result=kv), indent=1))


def result(rows, models, precs, maxb, sdpa):
    "The headline ratios: per model, each precision/mode/size against fp32-eager-224, plus steps/s of the reference"
    get = lambda m, s, p, mo='eager', at='sdpa': next((r for r in rows if (r['model'], r['size'], r['prec'], r['mode'], r['attn']) == (m, s, p, mo, at)
                                                      and 'samples_s' in r), None)
    kv = {}
    for m in models:
        ref = get(m, 224, 'fp32')
        if ref: kv[f'{m}_fp32_224_steps_s'] = f"{ref['steps_s']:.3f}"
        for r, k in [(get(m, 112, 'fp32'), '112_vs_224'), *[(get(m, 224, p), f'{p}_vs_fp32_224') for p in precs if p != 'fp32'],
                     (get(m, 112, 'bf16'), 'bf16_112_vs_fp32_224')]:
            if r and ref: kv[f'{m}_{k}'] = f"{r['samples_s']/ref['samples_s']:.2f}"
        for p in precs:   # compiled against eager at the same precision, at the largest size measured compiled
            for s in (224, 112):
                c, e = get(m, s, p, 'compile'), get(m, s, p)
                if c and e: kv[f'{m}_compile_vs_eager_{p}_{s}'] = f"{c['samples_s']/e['samples_s']:.2f}"; break
        if sdpa:
            for p in precs:
                s_, e_ = get(m, max(r['size'] for r in rows), p), get(m, max(r['size'] for r in rows), p, at='eager')
                if s_ and e_: kv[f'{m}_sdpa_vs_eager_{p}'] = f"{s_['samples_s']/e_['samples_s']:.2f}"
    for size, b in maxb.items(): kv[f'base_max_batch_{size}'] = b
    return kv


if __name__ == '__main__': main()
