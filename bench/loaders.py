"""Loader benchmark (not a timed test): training clips/s of the ways to read EchoNet clips, on one synthetic dataset.

  naive         OpenCV, one process: decode the whole video (`read_video`), then take the clip and transform it
  cv2_float     each worker turns its clips into float32 model input at `--size`
                (the same `DeviceClipTransform`, run on the CPU inside the worker) and ships that
  cv2_uint8     the loader now: workers ship uint8 clips as stored (112 px) with their augmentation plans
  cv2_uint8+tfm the same, plus the transform to float model input at `--size` in the consuming process, on its
                device (the GPU when there is one, else the CPU): what a training step receives
  dali_cpu      the DALI loader on the CPU (`--workers` DALI threads), uint8 out
  dali_gpu      the DALI loader on the GPU (NVDEC), when there is one, uint8 out

Every method serves the same TRAIN split with the same random clips and plans (seed, epoch), one warm-up batch untimed
(worker start, file cache), then `--passes` timed epochs. It prints a table with ratios to the float32 loader
and to the naive reader, the megabytes each clip costs between processes, and ends with one line `RESULT key=value ...`.

    python bench/loaders.py                       # ~2 min on 2 cores
    python bench/loaders.py --size 112 --videos 80 --data /tmp/echo_bench
"""
import argparse, os, sys, time, tempfile, shutil, warnings
from pathlib import Path
import numpy as np, torch
from echonet_ef.core import DataConfig
from echonet_ef.results import save_results
from echonet_ef.data import EchoDataset, get_dataloaders, clip_indices, collate, model_inputs
from echonet_ef.video import read_video
from echonet_ef.dali_loader import get_dali_dataloaders, dali_available


def make_data(out, n_videos, seed=0):
    "A synthetic MJPG dataset in `out` (reused when it is already there)"
    if (Path(out)/'FileList.csv').exists(): return out
    from echonet_ef.synthetic import make_dataset
    make_dataset(out, n_videos, seed=seed, codec='MJPG')
    return out


class NaiveDataset(EchoDataset):
    "The same clips as `EchoDataset`, read the naive way: decode the whole video, then index and transform it"
    def __getitem__(self, i):
        epoch, i = i if isinstance(i, tuple) else (self.epoch, i)
        rng = np.random.default_rng([self.seed, epoch, i])
        video = read_video(self.root/'Videos'/f'{self.df.FileName[i]}.avi', size=None)
        idxs = clip_indices(self.starts(i, rng)[0], self.cfg.clip_len, self.period(i))
        mask = idxs < len(video)
        frames = np.zeros((len(idxs),) + video.shape[1:], np.uint8); frames[mask] = video[idxs[mask]]
        x = self.tfm.device(frames, self.tfm.plan(rng), mask)
        return dict(pixel_values=x, labels=torch.tensor(self.df.EF[i], dtype=torch.float32), filename=self.df.FileName[i])


class FloatDataset(EchoDataset):
    "`EchoDataset` shipping float32: the worker ships float32 model input at the model's size"
    def __getitem__(self, i):
        b = super().__getitem__(i)
        return dict(pixel_values=self.tfm.device(b['pixel_values'], b['plan'], b['mask']), labels=b['labels'],
                    filename=b['filename'])


def loader(ds_cls, cfg, seed=0, workers=None):
    "A TRAIN `DataLoader` over `ds_cls`, built exactly as `get_dataloaders` builds its loaders"
    dl = get_dataloaders(cfg, ('TRAIN',), seed=seed)['TRAIN']
    ds = ds_cls(cfg.root, 'TRAIN', cfg, seed=seed)
    nw = dl.num_workers if workers is None else workers
    return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, sampler=dl.sampler, num_workers=nw,
                                       collate_fn=collate, persistent_workers=nw > 0, drop_last=True,
                                       pin_memory=torch.cuda.is_available())


def clips_per_s(dl, passes, tfm=None, device=None):
    "Clips/s over `passes` epochs of `dl` (transformed by `tfm` on `device` if given), after one warm-up batch"
    for b in dl: break
    n, t, mb = 0, time.perf_counter(), 0.0
    for e in range(passes):
        if hasattr(dl.sampler, 'set_epoch'): dl.sampler.set_epoch(e)
        dl.dataset.epoch = e
        for b in dl:
            x = b['pixel_values']
            mb = x[0].numel() * x.element_size() / 2**20
            if tfm is not None: x = model_inputs(b, tfm, device)
            if x.is_cuda: torch.cuda.synchronize()
            n += len(x)
    return n, time.perf_counter() - t, mb


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
        gpu = torch.cuda.is_available()
        dev = torch.device('cuda' if gpu else 'cpu')
        print(f"dataset: {a.data} ({time.perf_counter()-t:.0f} s to make); torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs, GPU: {torch.cuda.get_device_name() if gpu else 'none'}")
        cfg = DataConfig(root=a.data, size=a.size, batch_size=a.batch, num_workers=a.workers)
        tfm = EchoDataset(cfg.root, 'TRAIN', cfg).tfm.device
        methods = {'naive': (lambda: loader(NaiveDataset, cfg, workers=0), None),
                   'cv2_float': (lambda: loader(FloatDataset, cfg), None),
                   'cv2_uint8': (lambda: get_dataloaders(cfg, ('TRAIN',))['TRAIN'], None),
                   'cv2_uint8+tfm': (lambda: get_dataloaders(cfg, ('TRAIN',))['TRAIN'], tfm)}
        ok, why = dali_available()
        if ok:
            methods['dali_cpu'] = (lambda: get_dali_dataloaders(cfg, ('TRAIN',), device='cpu')['TRAIN'], None)
            if gpu: methods['dali_gpu'] = (lambda: get_dali_dataloaders(cfg, ('TRAIN',), device='gpu')['TRAIN'], None)
        else: print(f"DALI skipped: {why}")
        res, mbs = {}, {}
        for k, (make, tf) in methods.items():
            n, s, mb = clips_per_s(make(), a.passes, tf, dev)
            res[k], mbs[k] = n / s, mb
            print(f"  {k:14s} {n:4d} clips in {s:6.2f} s")
        base, naive = res['cv2_float'], res['naive']
        print(f"\n{'method':14s} {'clips/s':>8s} {'vs float':>9s} {'vs naive':>9s} {'MB/clip':>8s}   "
              f"({a.size}px out, {cfg.clip_len} frames, batch {a.batch}, {a.workers} workers, transform on {dev.type})")
        for k, v in res.items(): print(f"{k:14s} {v:8.1f} {v/base:8.2f}x {v/naive:8.2f}x {mbs[k]:8.2f}")
        kv = ([f"{k.replace('+', '_')}_clips_s={v:.1f}" for k, v in res.items()] +
              [f"{k.replace('+', '_')}_vs_float={v/base:.2f}" for k, v in res.items() if k != 'cv2_float'])
        table = [dict(method=k, clips_s=v, vs_float=v/base, vs_naive=v/naive, mb_clip=mbs[k]) for k, v in res.items()]
        save_results('loaders' + ('_gpu' if gpu else ''), {**{f"{k.replace('+', '_')}_clips_s": v for k, v in res.items()},
                     **{f"{k.replace('+', '_')}_vs_float": v/base for k, v in res.items()}}, table, args=vars(a))
        print('RESULT ' + ' '.join(kv))
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': main()
