"""Loader benchmark (not a timed test): training clips/s of four ways to read EchoNet clips, on one synthetic dataset.

  (a) naive   OpenCV, one process: decode the whole video (`read_video`), then take the clip's frames
  (b) cv2     the project's OpenCV loader (`EchoDataset` + `DataLoader`, `--workers` worker processes)
  (c) dali_cpu  the DALI loader on the CPU (`--workers` DALI threads)
  (d) dali_gpu  the DALI loader on the GPU (NVDEC), when there is one

Every method serves the same TRAIN split with the same random clips (seed, epoch) and the same transform, one warm-up
batch untimed (pipeline build, file cache), then `--passes` timed epochs. It prints a table with ratios to (a) and ends
with one line `RESULT key=value ...`.

    python bench/loaders.py                       # ~1-2 min on 2 cores
    python bench/loaders.py --size 112 --videos 80 --data /tmp/echo_bench
"""
import argparse, os, sys, time, tempfile, shutil, warnings
from pathlib import Path
import numpy as np, torch
from echonet_ef.core import DataConfig
from echonet_ef.data import EchoDataset, get_dataloaders, read_video, clip_indices, collate
from echonet_ef.dali_loader import get_dali_dataloaders, dali_available


def make_data(out, n_videos, seed=0):
    "A synthetic MJPG dataset in `out` (reused when it is already there)"
    if (Path(out)/'FileList.csv').exists(): return out
    from echonet_ef.synthetic import make_dataset
    make_dataset(out, n_videos, seed=seed, codec='MJPG')
    return out


class NaiveDataset(EchoDataset):
    "The same clips as `EchoDataset`, read the naive way: decode the whole video, then index it"
    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        video = read_video(self.root/'Videos'/f'{self.df.FileName[i]}.avi')
        idxs = clip_indices(self.starts(i, rng)[0], self.cfg.clip_len, self.period(i))
        mask = idxs < len(video)
        frames = np.zeros((len(idxs),) + video.shape[1:], np.uint8); frames[mask] = video[idxs[mask]]
        x = self.tfm(frames, mask, rng=rng)
        return dict(pixel_values=x, labels=torch.tensor(self.df.EF[i], dtype=torch.float32), filename=self.df.FileName[i])


def naive_loader(cfg, seed=0):
    ds = NaiveDataset(cfg.root, 'TRAIN', cfg, seed=seed)
    sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=0, collate_fn=collate,
                                       drop_last=True)


def clips_per_s(dl, passes):
    "Clips/s over `passes` epochs of `dl`, after one untimed warm-up batch"
    for b in dl: break
    n, t = 0, time.perf_counter()
    for e in range(passes):
        if hasattr(dl.sampler, 'set_epoch'): dl.sampler.set_epoch(e)
        dl.dataset.epoch = e
        for b in dl:
            x = b['pixel_values']
            if x.is_cuda: torch.cuda.synchronize()
            n += len(x)
    return n, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', help='dataset folder (made here if missing; default: a temporary folder)')
    p.add_argument('--videos', type=int, default=60, help='videos in the synthetic dataset (75%% TRAIN)')
    p.add_argument('--size', type=int, default=224, help='model input size')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers / DALI threads')
    p.add_argument('--passes', type=int, default=3, help='timed epochs per method')
    a = p.parse_args()
    tmp = None
    if a.data is None: tmp = a.data = tempfile.mkdtemp(prefix='echo_bench_')
    try:
        t = time.perf_counter(); make_data(a.data, a.videos)
        print(f"dataset: {a.data} ({time.perf_counter()-t:.0f} s to make); torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs, GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
        cfg = DataConfig(root=a.data, size=a.size, batch_size=a.batch, num_workers=a.workers)
        methods = {'naive': lambda: naive_loader(cfg),
                   'cv2': lambda: get_dataloaders(cfg, ('TRAIN',))['TRAIN']}
        ok, why = dali_available()
        if ok:
            methods['dali_cpu'] = lambda: get_dali_dataloaders(cfg, ('TRAIN',), device='cpu')['TRAIN']
            if torch.cuda.is_available(): methods['dali_gpu'] = lambda: get_dali_dataloaders(cfg, ('TRAIN',), device='gpu')['TRAIN']
        else: print(f"DALI skipped: {why}")
        res = {}
        for k, make in methods.items():
            n, s = clips_per_s(make(), a.passes)
            res[k] = n / s
            print(f"  {k:9s} {n:4d} clips in {s:6.2f} s")
        base = res['naive']
        print(f"\n{'method':10s} {'clips/s':>8s} {'vs naive':>9s}   ({a.size}px, {cfg.clip_len} frames, batch {a.batch}, {a.workers} workers)")
        for k, v in res.items(): print(f"{k:10s} {v:8.1f} {v/base:8.2f}x")
        kv = [f"{k}_clips_s={v:.1f}" for k, v in res.items()] + [f"{k}_vs_naive={v/base:.2f}" for k, v in res.items() if k != 'naive']
        print('RESULT ' + ' '.join(kv))
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': main()
