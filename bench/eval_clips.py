"""Benchmark: all-clip evaluation that decodes each video once against reading each chunk of 16 clips on its own.

Run: `python bench/eval_clips.py [--videos 16] [--clips all,5] [--device cpu] [--threads 2] [--no-model]`.
The demo's model (tiny VideoMAE, 16-frame clips every 4 frames, clip_stats stem; random weights: speed does not
depend on them) over the TEST+VAL videos of a synthetic 112-px dataset (100-200 frames each), 30 head MC-dropout
samples per clip in both paths, batches of 16 clips.
- `chunked`: the clips of a video in chunks of 16; each chunk decodes the frames it needs and
  transforms every clip on its own (a frame shared by 16 clips is transformed 16 times and decoded once per chunk).
- `decode once` (`evaluate_model`): the video's frames decoded once, each transformed once (`DeviceClipTransform`,
  on the model's device), clips cut from them in batches of 16; bf16 autocast on a GPU.
Both give the same predictions (checked). For each `--clips` setting it prints videos/s of each path, the ratio, and
the peak memory over the path (RSS sampled every 10 ms on the CPU; `torch.cuda.max_memory_allocated` on a GPU).
`--no-model` times the data side alone (decode + transform + cut, no forward pass).
The last line is `RESULT all_speedup=... all_data_speedup=... ...`.
"""
import argparse, os, shutil, tempfile, threading, time, warnings
os.environ.setdefault('HF_HUB_OFFLINE', '1')
from pathlib import Path
import numpy as np, pandas as pd, psutil, torch
from echonet_ef.core import ModelConfig
from echonet_ef.data import EchoDataset, clip_indices, parse_clips, read_filelist
from echonet_ef.video import read_frames
from echonet_ef.model import build_model, save_model, load_model, model_data_config
from echonet_ef.evaluate import eval_starts, VideoFrames, evaluate_model
from echonet_ef.infer import clip_batches, frame_input, clip_outputs, eval_amp
from echonet_ef.test_utils import synth_data
from echonet_ef.results import save_results

class Peak:
    "Peak RSS (MB) of this process over a block, sampled every 10 ms; GPU: peak allocated memory"
    def __init__(self, dev): self.dev, self.peak, self._on = dev, 0.0, False
    def __enter__(self):
        if self.dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(); return self
        p, self._on = psutil.Process(), True
        def run():
            while self._on: self.peak = max(self.peak, p.memory_info().rss/2**20); time.sleep(0.01)
        self._t = threading.Thread(target=run, daemon=True); self._t.start(); return self
    def __exit__(self, *a):
        if self.dev.type == 'cuda': self.peak = torch.cuda.max_memory_allocated()/2**20
        else: self._on = False; self._t.join()

@torch.no_grad()
def chunked(model, ds, clips, n_samples=30, bs=16, run_model=True):
    "Reading in chunks: chunks of `bs` clips per video, each chunk read, each clip transformed on its own"
    dev, preds = next(model.parameters()).device, {}
    for i in range(len(ds)):
        s, n = eval_starts(ds, i, clips), ds.infos[i]['n_frames']
        out = []
        for k in range(0, len(s), bs):
            idx = np.stack([clip_indices(t, ds.cfg.clip_len, ds.period(i)) for t in s[k:k+bs]])
            want = np.unique(idx[idx < n])
            fr = read_frames(ds.root/'Videos'/f'{ds.df.FileName[i]}.avi', want, n_frames=n)
            pos = np.searchsorted(want, np.minimum(idx, want[-1]))
            x = torch.stack([ds.tfm(fr[p], c < n) for p, c in zip(pos, idx)]).to(dev)
            if run_model: out.append(clip_outputs(model, x, n_samples, eval_amp(dev)).pred)
        if run_model: preds[ds.df.FileName[i]] = torch.cat(out).mean().item()
    return preds

@torch.no_grad()
def data_only(ds, clips, dev, bs=16):
    "The new path's data side alone: decode once, transform each frame once, cut the clips"
    vf, to_input = VideoFrames(ds, clips), frame_input(ds.tfm.device, dev)
    for i in range(len(vf)):
        it = vf[i]
        for x in clip_batches(it['frames'], it['pos'], to_input, bs): pass

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--videos', type=int, default=16); ap.add_argument('--clips', default='all,5')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--samples', type=int, default=30)
    ap.add_argument('--no-model', action='store_true')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); warnings.filterwarnings('ignore')
    dev = torch.device(a.device)
    data = synth_data(24)                      # 112 px, 100-200 frames; TEST and VAL hold 6 videos
    root = Path(tempfile.mkdtemp(prefix='bench_eval_clips_'))   # this run's TEST split and model
    fl = read_filelist(data, check_videos=False)
    sub = fl.head(a.videos).assign(Split='TEST')
    sub.to_csv(root/'FileList.csv', index=False)
    (root/'Videos').symlink_to(data/'Videos')
    mc = ModelConfig(backbone=None, pretrained=False, stem='clip_stats', videomae=dict(hidden_size=128,
                     num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, patch_size=16, tubelet_size=16))
    m = build_model(mc, image_size=112, num_frames=16)
    save_model(m, root/'model', extra=dict(image_size=112, num_frames=16, period=4))
    model = load_model(root/'model', dev)
    ds = EchoDataset(root, 'TEST', model_data_config(model, root), train=False, n_clips=1)
    print(f"{len(ds)} videos of {sorted(ds.df.NumberOfFrames)[0]}-{sorted(ds.df.NumberOfFrames)[-1]} frames at 112 px; "
          f"{dev}, {a.threads} thread(s); demo model, {a.samples} MC samples, batches of 16 clips")
    res, rows = {}, []
    for c in a.clips.split(','):
        clips = parse_clips(c)
        n_clips = sum(len(eval_starts(ds, i, clips)) for i in range(len(ds)))
        if not a.no_model:
            chunked(model, ds, clips, a.samples)       # warm-up (caches, allocator)
            with Peak(dev) as p0:
                t = time.perf_counter(); ref = chunked(model, ds, clips, a.samples); t_old = time.perf_counter() - t
            with Peak(dev) as p1:
                t = time.perf_counter()
                df = evaluate_model(model, root, 'TEST', clips=clips, n_samples=a.samples, scale=1.0,
                                    method='mc_dropout', batch_size=16)
                t_new = time.perf_counter() - t
            err = float(np.max(np.abs(df.set_index('FileName').EF_pred.loc[list(ref)].values - np.array(list(ref.values())))))
            assert err < 0.05 if dev.type == 'cuda' else err < 1e-3, f"the paths disagree by {err}"
            rows.append(dict(clips=c, clips_total=n_clips, path='chunked', videos_s=len(ds)/t_old,
                             peak_mb=p0.peak, vs_chunked=1.0))
            rows.append(dict(clips=c, clips_total=n_clips, path='decode once', videos_s=len(ds)/t_new,
                             peak_mb=p1.peak, vs_chunked=t_old/t_new))
            res[f'{c}_speedup'] = t_old/t_new
        t = time.perf_counter(); chunked(model, ds, clips, run_model=False); d_old = time.perf_counter() - t
        t = time.perf_counter(); data_only(ds, clips, dev); d_new = time.perf_counter() - t
        rows.append(dict(clips=c, clips_total=n_clips, path='data side only: chunked', videos_s=len(ds)/d_old,
                         peak_mb=np.nan, vs_chunked=1.0))
        rows.append(dict(clips=c, clips_total=n_clips, path='data side only: decode once', videos_s=len(ds)/d_new,
                         peak_mb=np.nan, vs_chunked=d_old/d_new))
        res[f'{c}_data_speedup'] = d_old/d_new
        print(pd.DataFrame(rows[-4 if not a.no_model else -2:]).round(2).to_markdown(index=False), flush=True)
    save_results('eval_clips' + ('_gpu' if dev.type == 'cuda' else ''), res, rows, args=vars(a))
    print('RESULT ' + ' '.join(f'{k}={v:.2f}' for k, v in res.items()))
    shutil.rmtree(root, ignore_errors=True)

if __name__ == '__main__': main()
