"""Run the notebooks and store their outputs in them, so that GitHub and the docs site show example values and plots
without running anything.

    python tools/run_nbs.py                  # every notebook in nbs/, two at a time
    python tools/run_nbs.py --file_re '07_*'  # some of them

Cells run as `nbdev_test` runs them (flagged cells such as `#| slow` and the `nbdev_export()` cell are skipped and
keep no output), with HF_HUB_OFFLINE=1 and W&B disabled. What is stored is kept small: figures as PNG at 72 dpi,
text outputs cut to 30 lines, no stderr (progress bars, warnings), no widget views or widget state. A notebook whose
run fails is left unchanged. `nbdev_clean` is applied afterwards to the notebooks it ran, as before every commit.
"""
import os, re, sys, subprocess, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 30
MAX_PNG = 80_000    # characters of base64 per stored PNG; a larger picture is stored as JPEG, scaled down if need be
MAX_JPEG = 120_000
ENV = dict(HF_HUB_OFFLINE='1', WANDB_MODE='disabled', TRANSFORMERS_VERBOSITY='error', TQDM_DISABLE='1')
SETUP = ("from matplotlib_inline.backend_inline import set_matplotlib_formats\n"
         "set_matplotlib_formats('png', dpi=72, bbox_inches='tight')")  # stored figures only: code's own PNGs unchanged


def _flags():
    "The flags whose cells are skipped: all of `tst_flags`, except `dali` where NVIDIA DALI imports"
    from nbdev.config import get_config
    fl = set(re.split(r'[|\s]+', get_config().tst_flags.strip())) - {''}
    try: import nvidia.dali; fl.discard('dali')
    except Exception: pass
    return fl


def _skip(cell, flags)->bool:
    "Cells `nbdev_test` does not run"
    from nbdev.process import extract_directives
    if cell.cell_type != 'code' or not cell.source.strip() or 'nbdev_export'+'(' in cell.source: return True
    from fastcore.basics import AttrDict
    d = extract_directives(AttrDict(source=cell.source), remove=False)
    if d.get('eval:', [''])[0].lower() == 'false': return True
    return bool(flags & d.keys())


def _small_image(b64:str)->tuple:
    "A (mime type, base64) pair for PNG `b64`: kept if small, else a JPEG of at most `MAX_JPEG` characters"
    import base64, io
    from PIL import Image
    if len(b64) <= MAX_PNG: return 'image/png', b64
    im = Image.open(io.BytesIO(base64.b64decode(b64))).convert('RGB')
    while True:
        buf = io.BytesIO(); im.save(buf, format='JPEG', quality=85, optimize=True)
        out = base64.b64encode(buf.getvalue()).decode()
        if len(out) <= MAX_JPEG: return 'image/jpeg', out
        f = max(0.5, min(0.9, (MAX_JPEG/len(out))**0.5))
        im = im.resize((max(1, int(im.width*f)), max(1, int(im.height*f))), Image.LANCZOS)


def _trim(o:dict)->dict|None:
    "A smaller copy of output `o`, or None to drop it"
    if o.get('output_type') == 'stream':
        if o.get('name') == 'stderr': return None
        lines = ''.join(o['text']).splitlines(keepends=True)
        if len(lines) > MAX_LINES: lines = lines[:MAX_LINES] + [f'… ({len(lines)-MAX_LINES} more lines)\n']
        o['text'] = lines
    if o.get('output_type') in ('execute_result', 'display_data'):
        data = o.get('data', {})
        data.pop('application/vnd.jupyter.widget-view+json', None)
        if 'image/png' in data:
            mime, b64 = _small_image(''.join(data.pop('image/png')).replace('\n', ''))
            data[mime] = b64
            if mime != 'image/png': o.get('metadata', {}).pop('image/png', None)
        if 'text/html' in data and 'image/png' not in data and len(''.join(data['text/html'])) > 20_000: data.pop('text/html')
        for k in ('text/plain',):
            if k in data:
                lines = ''.join(data[k]).splitlines(keepends=True)
                if len(lines) > MAX_LINES: data[k] = lines[:MAX_LINES] + [f'… ({len(lines)-MAX_LINES} more lines)']
        if not data: return None
    return o


def run_one(fn:Path)->str:
    "Run notebook `fn` in this process and store its outputs; raises if a cell fails"
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    os.environ.update(ENV); os.environ['IN_TEST'] = '1'
    nb, flags = read_nb(fn), _flags()
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    k = CaptureShell(fn)
    with working_directory(fn.parent):
        k.run_cell(SETUP)
        k.run_all(nb, exc_stop=True, preproc=lambda c: _skip(c, flags))
    for c in nb.cells:
        if c.cell_type == 'code':
            c.outputs = [t for o in c.get('outputs', []) if (t := _trim(dict(o))) is not None]
            if _skip(c, flags): c.outputs = []
    nb.metadata.pop('widgets', None)
    write_nb(nb, fn)
    return fn.name


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--file_re', default=r'^[0-9a-z].*\.ipynb$', help='regex on notebook file names')
    ap.add_argument('--n_workers', type=int, default=2)
    ap.add_argument('--one', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        run_one(Path(a.one).resolve()); return
    nbs = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if re.search(a.file_re, p.name) and not p.name.startswith('_'))
    def _go(p):
        t = time.time()
        r = subprocess.run([sys.executable, __file__, '--one', str(p)], capture_output=True, text=True,
                           errors='replace', env={**os.environ, **ENV})
        return p.name, r.returncode, time.time()-t, (r.stderr or r.stdout).strip().splitlines()[-15:]
    failed = []
    with ThreadPoolExecutor(a.n_workers) as ex:
        for name, rc, dt, tail in ex.map(_go, nbs):
            print(f"{'ok  ' if rc == 0 else 'FAIL'} {name} ({dt:.0f} s)", flush=True)
            if rc: failed.append(name); print('\n'.join('    '+l for l in tail))
    for p in nbs: subprocess.run(['nbdev_clean', '--fname', str(p)], cwd=ROOT, check=True)   # only the notebooks it ran
    if failed: sys.exit(f"run_nbs: {len(failed)} notebook(s) failed and were left unchanged: {', '.join(failed)}")


if __name__ == '__main__': main()
