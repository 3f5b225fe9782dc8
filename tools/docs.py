"""Build the docs site offline, without Quarto: nbdev's processors over executed notebooks, rendered by Sphinx + MyST-NB.

    python tools/docs.py             # build _site/ from the outputs stored in the notebooks (tools/run_nbs.py)
    python tools/docs.py --execute   # run every notebook again, the way nbdev_test does, instead

    python tools/docs.py --quarto    # where Quarto is installed: the Quarto site (`nbdev_docs`, into _docs/), with plots

Both run nbdev's docs processors (those of `nbdev_proc_nbs`: show_doc cells, hidden cells, ...) on every notebook.
"""
import json, os, re, shutil, signal, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from execnb.nbio import read_nb, write_nb
from fastcore.script import call_parse
from nbdev.config import get_config
from nbdev.doclinks import nbglob, _nbpath2html
from nbdev.processors import FilterDefaults, exec_show_docs, _default_exp

ROOT = Path(__file__).resolve().parent.parent

# ---- 1. which notebooks, in which order, under which page name

def doc_notebooks(nbs=None, file_glob='*.ipynb'):
    "Notebooks that become pages: index first, then the rest in name (= number) order; `_`-prefixed ones are skipped"
    nbs = Path(nbs or get_config().nbs_path)
    fns = nbglob(nbs, file_glob=file_glob, as_path=True)
    return sorted(fns, key=lambda p: (p.relative_to(nbs).with_suffix('').as_posix()!='index', p.relative_to(nbs).as_posix()))

def page_name(fn, nbs=None):
    "Page of notebook `fn` relative to the site root, as nbdev links to it (`nbs/00_core.ipynb` -> `core.html`)"
    nbs = Path(nbs or get_config().nbs_path)
    return _nbpath2html(Path(fn).relative_to(nbs)).as_posix()

# ---- 2. nbdev's processors, with every cell executed (run in a fresh process per notebook)

def _skip(cell, flags):
    "Cells `nbdev_test` skips: not code, `eval: false`, a test flag, the `nbdev_export()` cell, another language"
    if cell.cell_type!='code' or not cell.source or 'nbdev_export'+'(' in cell.source: return True
    d = getattr(cell, 'directives_', {}) or {}
    if d.get('eval:', [''])[0].lower()=='false': return True
    if getattr(cell, 'metadata', {}).get('language', 'python')!='python': return True
    return bool(set(flags) & d.keys())

_SHOW_DOC = '''
def show_doc(sym, *args, **kwargs):
    "nbdev\'s `show_doc`, but a class defined in the notebook is documented from `{lib}.{mod}`, whose source (docments) is readable"
    import importlib, nbdev.showdoc
    lib_sym = sym
    if isinstance(sym, type) and sym.__module__=='__main__':
        try: lib_sym = getattr(importlib.import_module('{lib}.{mod}'), sym.__qualname__, sym)
        except ImportError: pass
    res = nbdev.showdoc.show_doc(lib_sym, *args, **kwargs)
    if lib_sym is not sym and hasattr(res, 'fn'): res.fn = sym.__qualname__  # its source link, as for the notebook's class
    return res
'''

def _has_dali()->bool:
    try: import nvidia.dali; return True
    except Exception: return False

class exec_docs(exec_show_docs):
    "nbdev's `exec_show_docs` (run the cells `show_doc` needs), with the `show_doc` above; `everything`: run every cell"
    everything = False
    def begin(self):
        super().begin()
        self.flags = re.split(r'[|\s]+', get_config().tst_flags.strip())
        if _has_dali(): self.flags = [f for f in self.flags if f != 'dali']  # DALI cells run where DALI imports
        if str(getattr(self.nb, 'frontmatter_', {}).get('skip_exec', '')).lower()=='true': self.everything = False
        if hasattr(self, 'k'): self.k.run_cell(_SHOW_DOC.format(lib=get_config().lib_name, mod=_default_exp(self.nb)))

    def __call__(self, cell):
        if not self.everything: return super().__call__(cell)
        if not hasattr(self, 'k') or _skip(cell, self.flags): return
        self.k.cell(cell)
        if self.k.exc: raise RuntimeError(f"{self.nb.path_}: cell {cell.idx_} failed:\n{self.k.prettytb(fname=self.nb.path_)}")

class exec_all(exec_docs):
    "Run every cell `nbdev_test` runs, so the pages keep their outputs and plots"
    everything = True

class DocsFilter(FilterDefaults):
    "nbdev's docs processors, with `exec_show_docs` swapped for `exec_all` (or `exec_docs` if not `execute`)"
    def __init__(self, execute=True): self.execute = execute
    def base_procs(self):
        ex = exec_all if self.execute else exec_docs
        return [ex if p is exec_show_docs else p for p in super().base_procs()]

def proc_nb(src, dst, execute=True):
    "Process notebook `src` into `dst` for rendering: nbdev's processors (as `nbdev_proc_nbs`), all cells run if `execute`"
    src,dst = Path(src).resolve(),Path(dst).resolve()
    os.environ['IN_TEST'] = '1'
    for k, v in dict(HF_HUB_OFFLINE='1', WANDB_MODE='disabled').items(): os.environ.setdefault(k, v)  # as tools/test.sh runs them
    os.chdir(src.parent)  # notebooks run from their folder, as under nbdev_test
    nb = read_nb(src)
    DocsFilter(execute)(nb)
    for c in nb.cells:  # live-widget outputs mean nothing on a static page (and their nested 'source' keys break write_nb)
        if c.get('outputs'): c['outputs'] = [o for o in c['outputs'] if not _widget_output(o)]
    nb.metadata.pop('widgets', None)   # the widget state the kernel saved
    write_nb(nb, dst)

def _widget_output(o)->bool:
    "Whether output `o` is a live ipywidget view (or holds a non-text 'source' that execnb cannot write)"
    data = o.get('data', {}) or {}
    if 'application/vnd.jupyter.widget-view+json' in data: return True
    def bad(x):
        if isinstance(x, dict): return any((k == 'source' and not isinstance(v, str)) or bad(v) for k, v in x.items())
        if isinstance(x, (list, tuple)): return any(bad(v) for v in x)
        return False
    return bad(o)

def proc_all(fns, nbs, dest, execute=True, n_workers=2, timeout=900):
    "Process notebooks `fns` from `nbs` into `dest` (a fresh Python per notebook, `n_workers` at once, each within `timeout` s)"
    errs,running = [],[]
    def _one(fn):
        t = time.time()
        (dest/fn.relative_to(nbs)).parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, '--proc', str(fn), '--proc_dst', str(dest/fn.relative_to(nbs))] + (['--execute'] if execute else [])
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
        running.append(p)
        try: out,err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # kill the notebook and anything it started
            os.killpg(p.pid, signal.SIGKILL)
            out,err = p.communicate()
            err += f"\ntimed out after {timeout}s"
        return fn, subprocess.CompletedProcess(cmd, p.returncode, out, err), time.time()-t
    with ThreadPoolExecutor(max(1, n_workers)) as ex:
        try:
            for fn,r,secs in ex.map(_one, fns):
                print(f"  {fn.name}: {secs:.0f}s{'' if r.returncode==0 else ' FAILED'}", flush=True)
                if r.returncode: errs.append(f"{fn.name}:\n{r.stderr.strip()[-3000:]}")
        except BaseException:  # e.g. Ctrl-C: the notebooks run in sessions of their own, so stop them here
            ex.shutdown(wait=False, cancel_futures=True)
            for p in running:
                if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
            raise
    if errs: raise RuntimeError('docs: notebooks failed to run:\n' + '\n\n'.join(errs))

# ---- 3. Quarto-flavoured processed notebooks -> MyST-NB notebooks

_re_opt = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_re_ansi = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
_callouts = dict(note='note', tip='tip', warning='warning', important='important', caution='caution')

def quarto_opts(src):
    "Split the leading `#| key: value` Quarto options off a code cell's `src`"
    lines,opts = src.splitlines(),{}
    while lines and (m := _re_opt.match(lines[0])):
        opts[m[1]] = m[2].strip('"\'').lower()
        lines.pop(0)
    return opts, '\n'.join(lines)

def fix_md(md, pages, depth=0, site_url=''):
    "Make Quarto/nbdev markdown work in MyST: site links relative, `.ipynb` links to pages, callouts to admonitions"
    up = '../'*depth
    if site_url: md = md.replace(site_url.rstrip('/')+'/', up)
    def _nblink(m): return f"]({up}{pages.get(m[1]+'.ipynb', _nbpath2html(Path(m[1])).as_posix())}{m[2] or ''})"
    md = re.sub(r'\]\((?:\./)?([^)\s#:]+)\.ipynb(#[^)\s]*)?\)', _nblink, md)
    def _div(m):
        cls = m[1].split()
        co = next((c[len('.callout-'):] for c in cls if c.startswith('.callout-')), None)
        if co in _callouts: return f':::{{{_callouts[co]}}}'
        return ':::{container} ' + ' '.join(c.lstrip('.') for c in cls if c.startswith('.'))
    md = re.sub(r'^:::+\s*\{([^}]*)\}\s*$', _div, md, flags=re.MULTILINE)
    return md

_re_src_link = re.compile(r'^\[source\]\(([^)]+)\)\{[^}]*\}\s*$', flags=re.MULTILINE)

def show_doc_md(md):
    "nbdev's `show_doc` markdown, rearranged for docutils: no leading rule, the source link inside the symbol's section"
    md = re.sub(r'^\s*---\s*\n', '', md)
    # nbdev links backticked names in the signature's docments too, where markdown links show as text: unlink them
    md = re.sub(r'```.*?```', lambda m: re.sub(r'\[(`[^`]+`)\]\([^)\s]*\)', r'\1', m[0]), md, flags=re.DOTALL)
    m = _re_src_link.search(md)
    if not m: return md
    md = _re_src_link.sub('', md, count=1)
    return re.sub(r'^(#+ .*)$', lambda h: f"{h[1]}\n\n[source]({m[1]}){{.sig-source}}", md, count=1, flags=re.MULTILINE)

def _md_cell(src): return dict(cell_type='markdown', metadata={}, source=src)

def to_myst(nb, pages, depth=0, site_url=''):
    "Turn a processed notebook into a MyST-NB one, doing what Quarto does with nbdev's output; returns (nb, frontmatter)"
    cells,fm = [],{}
    for c in nb['cells']:
        src = ''.join(c.get('source', ''))
        if c['cell_type']=='raw' and src.strip().startswith('---') and not fm:
            fm = yaml.safe_load(src.strip().strip('-')) or {}
            continue
        if c['cell_type']=='markdown':
            cells.append(_md_cell(fix_md(src, pages, depth, site_url))); continue
        if c['cell_type']!='code': continue
        opts,code = quarto_opts(src)
        if opts.get('include')=='false': continue
        outs = [] if opts.get('output')=='false' else c.get('outputs', [])
        for o in outs:
            if 'text' in o: o['text'] = _re_ansi.sub('', ''.join(o['text']))
            if 'traceback' in o: o['traceback'] = [_re_ansi.sub('', t) for t in o['traceback']]
        echo = opts.get('echo')!='false' and code.strip()
        if opts.get('output')=='asis':  # show_doc: its markdown becomes part of the page, as Quarto does
            if echo: cells.append(dict(cell_type='code', metadata={}, source=code, outputs=[], execution_count=None))
            md = [show_doc_md(''.join(o['data']['text/markdown'])) for o in outs if 'text/markdown' in o.get('data', {})]
            cells.append(_md_cell(fix_md('\n\n'.join(md), pages, depth, site_url)))
            continue
        if not echo and not outs: continue
        tags = [] if echo else ['remove-input']
        cells.append(dict(cell_type='code', metadata=dict(tags=tags) if tags else {}, source=code, outputs=outs, execution_count=None))
    title = fm.get('title') or 'Untitled'
    head = f"# {title}" + (f"\n\n{fm['description']}" if fm.get('description') else '')
    cells = [_md_cell(head)]+cells
    for i,c in enumerate(cells): c['id'] = f'cell-{i}'
    res = dict(nb, cells=cells, nbformat=4, nbformat_minor=5)
    res['metadata'] = dict(nb.get('metadata', {}), kernelspec=dict(name='python3', display_name='Python 3', language='python'))
    return res, fm

# ---- 4. Sphinx configuration and build

def pandoc_id(text):
    "Heading id as Pandoc (and so Quarto and nbdev's doc links) makes it: `### Config.from_dict` -> `config.from_dict`"
    s = re.sub(r'[^\w\s.-]', '', re.sub(r'<[^>]+>|`', '', text)).strip().lower()
    return re.sub(r'^[^a-z]+', '', re.sub(r'\s+', '-', s))

CSS = """a.sig-source { float: right; font-size: smaller; margin-top: -2.2em; }
.cell_output .output.text_html, .cell_output img { max-width: 100%; }
"""

def conf_py(cfg):
    "Sphinx `conf.py` for the site"
    return f'''# generated by tools/docs.py
import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})  # for docs.pandoc_id
project = {cfg.title!r}
author = {cfg.author!r}
copyright = {cfg.copyright!r}
extensions = ['myst_nb']
html_theme = 'furo'
html_title = {cfg.title!r}
html_static_path = ['_static']
html_css_files = ['docs.css']
html_show_sourcelink = html_copy_source = False
nb_execution_mode = 'off'                  # tools/docs.py ran the notebooks already
nb_render_markdown_format = 'myst'         # markdown outputs may hold tables
nb_merge_streams = True
myst_enable_extensions = ['colon_fence', 'dollarmath', 'attrs_inline']
myst_all_links_external = True             # links are already site-relative, as Quarto writes them
myst_heading_anchors = 6
myst_heading_slug_func = 'docs.pandoc_id' # the ids nbdev's doc links point at (`core.html#ef_from_volumes`)
suppress_warnings = ['myst.header', 'misc.highlighting_failure']  # show_doc's h3 under the h1; tracebacks
exclude_patterns = ['_build']
'''

def write_src(proc, src, fns, nbs, cfg):
    "Write the Sphinx source folder `src` from the processed notebooks in `proc`"
    pages = {fn.relative_to(nbs).as_posix(): page_name(fn, nbs) for fn in fns}
    site_url = cfg.doc_host.rstrip('/') + cfg.doc_baseurl.rstrip('/')
    docnames = []
    for fn in fns:
        page = pages[fn.relative_to(nbs).as_posix()]
        nb,fm = to_myst(json.loads((proc/fn.relative_to(nbs)).read_text()), pages, page.count('/'), site_url)
        docnames.append(page[:-len('.html')])
        if docnames[-1]=='index' and len(fns)>1:  # the sidebar: every other page, in notebook order
            toc = '\n'.join(p[:-len('.html')] for p in pages.values() if p!='index.html')
            nb['cells'].append(dict(_md_cell(f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```"), id='toctree'))
        dst = src/(docnames[-1]+'.ipynb')
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(nb, indent=1))
    for p in nbs.rglob('*'):  # images and other files the notebooks link to
        if p.is_file() and p.suffix.lower() in ('.png', '.jpg', '.jpeg', '.gif', '.svg', '.csv') and not any(s.startswith(('_','.')) for s in p.relative_to(nbs).parts):
            (src/p.relative_to(nbs)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src/p.relative_to(nbs))
    (src/'_static').mkdir(exist_ok=True)
    (src/'_static'/'docs.css').write_text(CSS)
    (src/'conf.py').write_text(conf_py(cfg))
    return docnames

def build(dest='_site', execute=True, n_workers=2, keep_src=None, timeout=900, file_glob='*.ipynb'):
    "Build the site into `dest`: process (and run) every notebook, convert for MyST-NB, render with Sphinx"
    os.chdir(ROOT)
    cfg = get_config()
    nbs,dest = cfg.nbs_path,ROOT/dest
    fns = doc_notebooks(nbs, file_glob)
    if not fns: raise RuntimeError(f"docs: no notebooks in {nbs} match {file_glob}")
    if (nbs/'index.ipynb').exists() and nbs/'index.ipynb' not in fns: fns.insert(0, nbs/'index.ipynb')  # the home page
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix='docs_') as tmp:
        tmp = Path(tmp)
        proc,src,out = tmp/'proc',Path(keep_src or tmp/'src'),tmp/'html'
        proc.mkdir(); src.mkdir(parents=True, exist_ok=True)
        print(f"docs: processing {len(fns)} notebooks{' (running every cell)' if execute else ''}", flush=True)
        proc_all(fns, nbs, proc, execute=execute, n_workers=n_workers, timeout=timeout)
        t1 = time.time()
        write_src(proc, src, fns, nbs, cfg)
        r = subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-j', str(max(1, n_workers)),
                            '-d', str(tmp/'doctrees'), str(src), str(out)], capture_output=True, text=True)
        if r.stderr.strip(): print(r.stderr.strip(), file=sys.stderr)
        if r.returncode: raise RuntimeError(f"docs: sphinx-build failed (exit {r.returncode})")
        old = dest.with_name(dest.name+'.old')
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists(): dest.rename(old)
        shutil.move(str(out), dest)  # the new site replaces the old one only once it is complete
        shutil.rmtree(old, ignore_errors=True)
    print(f"docs: built {dest.relative_to(ROOT)}/ ({len(fns)} pages) in {time.time()-t0:.0f}s "
          f"(notebooks {t1-t0:.0f}s, sphinx {time.time()-t1:.0f}s)")
    return dest

def build_quarto(execute=True, n_workers=2, timeout=900):
    "Build the Quarto site (`nbdev_docs`, into _docs/) from notebooks run here, so it shows outputs and plots too"
    if not shutil.which('quarto'):  # without it, nbdev_docs tries to download and `sudo dpkg -i` Quarto, then pip-installs
        raise RuntimeError("docs: Quarto not found; install it (`nbdev_install_quarto`, or https://quarto.org/docs/get-started/)")
    os.chdir(ROOT)
    cfg = get_config()
    cache = cfg.config_path/'_proc'
    shutil.rmtree(cache, ignore_errors=True)
    proc_all(doc_notebooks(cfg.nbs_path), cfg.nbs_path, cache, execute=execute, n_workers=n_workers, timeout=timeout)
    # nbdev_docs keeps processed notebooks in _proc/ that are newer than their source, so Quarto renders these ones
    subprocess.run(['nbdev_docs', '--n_workers', str(n_workers)], check=True)

@call_parse
def main(dest:str='_site', # output folder, relative to the repo root
         execute:bool=False, # run every cell again instead of showing the outputs stored in the notebooks
         file_glob:str='*.ipynb', # only these notebooks (to preview a page; the sidebar lists only them)
         n_workers:int=2, # notebooks processed at once
         timeout:int=900, # seconds one notebook may take
         keep_src:str=None, # also keep the generated Sphinx source in this folder (for debugging)
         quarto:bool=False, # build the Quarto site with `nbdev_docs` instead (needs Quarto), from the executed notebooks
         proc:str=None, # internal: process the one notebook `proc` into `proc_dst`
         proc_dst:str=None):
    "Build the docs site offline into `dest`"
    if proc: return proc_nb(proc, proc_dst, execute=execute)
    try:
        if quarto: build_quarto(execute=execute, n_workers=n_workers, timeout=timeout)
        else: build(dest, execute=execute, n_workers=n_workers, keep_src=keep_src, timeout=timeout, file_glob=file_glob)
    except RuntimeError as e: sys.exit(str(e))
