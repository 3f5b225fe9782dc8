"""Browser test of the docs site: build it (tools/docs.py), serve it on 127.0.0.1, open every page in headless Chromium.

    python tools/docs_test.py             # build _site/ then test it
    python tools/docs_test.py --no_build  # test the _site/ already there

Checks: the index and every notebook's page load and carry their title; every exported function and class has its
API docs (show_doc) on the page its doc link points at, with each docments-documented parameter; pages of notebooks
that plot show their images; the search box finds a page; no page pulls scripts or styles from the network.
Saves a screenshot of the index page to _site/index.png. Needs Chromium (Debian: `apt-get install -y chromium`).
"""
import functools, importlib, inspect, json, os, re, shutil, subprocess, sys, tempfile, threading, time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

from bs4 import BeautifulSoup
from fastcore.docments import docments
from fastcore.script import call_parse

sys.path.insert(0, str(Path(__file__).parent))
import docs

ROOT = docs.ROOT
CHROME_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage', '--hide-scrollbars']
_re_plot = re.compile(r'\bplt\.|\.plot\(|\.imshow\(|\.hist\(')

def find_chromium():
    "Path of the Chromium binary (`$CHROMIUM`, else the first of chromium, chromium-browser, google-chrome on PATH)"
    for o in [os.environ.get('CHROMIUM'), 'chromium', 'chromium-browser', 'google-chrome']:
        if o and shutil.which(o): return shutil.which(o)
    sys.exit("docs test: Chromium not found; install it (Debian: apt-get install -y chromium) or set $CHROMIUM")

def chromium(url, *args, timeout=90):
    "Run headless Chromium on `url` with a fresh profile; returns stdout (the DOM, with `--dump-dom`)"
    with tempfile.TemporaryDirectory(prefix='chromium_') as prof:
        r = subprocess.run([find_chromium(), *CHROME_FLAGS, f'--user-data-dir={prof}', *args, url],
                           capture_output=True, text=True, timeout=timeout)
    if r.returncode: raise RuntimeError(f"chromium exited {r.returncode} on {url}: {r.stderr.strip()[-500:]}")
    return r.stdout

def serve(site):
    "Serve folder `site` on 127.0.0.1 (a free port) from a background thread; returns (server, base url)"
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # the browser hanging up early is no error
            if not isinstance(sys.exc_info()[1], ConnectionError): super().handle_error(request, client_address)
    srv = Server(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}/'

# ---- what the pages must contain, from the notebooks and the library

def nb_info(fn):
    "Title of notebook `fn` (its `# Title` cell) and how many visible cells plot"
    nb = json.loads(Path(fn).read_text())
    title,plots = None,0
    flags = set(re.split(r'[|\s]+', docs.get_config().tst_flags.strip())) | {'hide', 'export', 'exports', 'exporti', 'eval: false', 'include: false'}
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type']=='markdown' and title is None and (m := re.search(r'^#\s+(\S.*?)\s*$', src, re.MULTILINE)): title = m[1]
        if c['cell_type']!='code': continue
        dirs = {re.sub(r'\s+', ' ', l[3:].strip()) for l in src.splitlines() if l.startswith('#|')}
        dirs |= {d.split(' ')[0] for d in dirs}
        if not (dirs & flags) and _re_plot.search(src): plots += 1
    return title, plots

def api_entries():
    "Exported functions and classes, as (module, name, object, page, anchor), from `_modidx` and each module's `__all__`"
    modidx = importlib.import_module(f"{docs.get_config().lib_name}._modidx").d['syms']
    res = []
    for mod,syms in modidx.items():
        m = importlib.import_module(mod)
        for nm in getattr(m, '__all__', []):
            o = getattr(m, nm, None)
            if not (inspect.isfunction(o) or inspect.isclass(o)) or getattr(o, '__module__', None)!=mod: continue
            if f'{mod}.{nm}' not in syms: continue
            page,_,anchor = syms[f'{mod}.{nm}'][0].partition('#')
            res.append((mod, nm, o, page, anchor))
    return res

def documented_params(o):
    "Parameters of `o` that carry a docments comment, as {name: comment}"
    try: dm = docments(o, full=True)
    except Exception: return {}
    return {k:v['docment'] for k,v in dm.items() if k not in ('self', 'return') and v.get('docment')}

def _norm(s):
    "`s` as text: markdown links and backticks dropped, whitespace collapsed"
    s = re.sub(r'\[([^\]]*)\]\([^)\s]*\)', r'\1', s).replace('`', '')
    return re.sub(r'\s+', ' ', s).strip()

def _api_body(head):
    "The show_doc part after heading `head` (up to the first example cell or subsection), if it holds a signature"
    body = []
    for t in head.find_next_siblings():
        if t.name=='section' or 'cell' in (t.get('class') or []): break
        body.append(t)
    return body if any(b.name=='pre' or b.find('pre') for b in body) else None

def check_api(soup, nm, o, anchor):
    "Problems with the API docs of `nm` on a page (empty if none): its doc link's anchor, its signature, its parameters"
    probs = [] if soup.find(id=anchor) else [f"{nm}: no element with id '{anchor}', where nbdev's doc links point"]
    heads = [h for h in soup.find_all(re.compile('^h[1-6]$')) if _norm(h.get_text()).rstrip('¶#').strip()==nm]
    bodies = [b for b in map(_api_body, heads) if b]
    if not bodies: return probs + [f"{nm}: no API docs (a `{nm}` heading followed by its signature)"]
    text = _norm(' '.join(b.get_text() for b in bodies[0]))
    probs += [f"{nm}: parameter `{p}` ({doc!r}) is not documented on the page" for p,doc in documented_params(o).items()
              if p not in text or _norm(doc) not in text]
    for tbl in [t for b in bodies[0] for t in ([b] if b.name=='table' else b.find_all('table'))]:
        # where show_doc renders a parameter table, every documented parameter is a row of it
        rows = {_norm(tr.find(['td', 'th']).get_text()) for tr in tbl.find_all('tr') if tr.find(['td', 'th'])}
        probs += [f"{nm}: parameter `{p}` missing from its table" for p in documented_params(o) if p not in rows]
    return probs

class Report:
    def __init__(self): self.passed,self.failed = 0,[]
    def __call__(self, what, probs):
        if probs: self.failed.append(what); print(f"FAIL {what}:\n  " + '\n  '.join(probs), flush=True)
        else: self.passed += 1; print(f"ok   {what}", flush=True)

def check_page(soup, base, page, title, plots, apis):
    "Problems with one page's DOM `soup`: title and heading, content, API docs, images, network resources"
    probs = []
    got = soup.title.get_text().strip() if soup.title else None
    if not got or not got.startswith(str(title)): probs.append(f"<title> is {got!r}, want it to start with {title!r}")
    h1 = soup.find('h1')
    if not h1 or _norm(h1.get_text()).rstrip('¶#').strip()!=title: probs.append(f"<h1> is {h1 and h1.get_text()!r}, want {title!r}")
    main = soup.find('article') or soup.body
    if len(_norm(main.get_text())) < len(title or '')+20: probs.append("the page has no content")
    for nm,o,anchor in apis: probs += check_api(soup, nm, o, anchor)
    imgs = [i['src'] for i in main.find_all('img') if i.get('src')]
    n_ok = sum(_img_ok(base, page, src) for src in imgs)
    if n_ok < len(imgs): probs.append(f"{len(imgs)-n_ok} broken images")
    if plots and not n_ok: probs.append(f"the notebook has {plots} plotting cells but the page shows no image")
    urls = [t.get('src') or (t.get('href') if 'stylesheet' in (t.get('rel') or []) else None) for t in soup.find_all(['script', 'link'])]
    ext = [u for u in urls if u and re.match(r'(https?:)?//', u) and 'mathjax' not in u.lower()]  # MathJax: a CDN, as in Quarto
    if ext: probs.append(f"loads from the network: {ext}")
    return probs, n_ok

def test_site(site, file_glob='*.ipynb', plots=True):
    "Open every page of the built `site` in Chromium and check it (`plots`: pages of plotting notebooks show images)"
    cfg,rep = docs.get_config(),Report()
    fns = docs.doc_notebooks(cfg.nbs_path, file_glob)
    if (cfg.nbs_path/'index.ipynb').exists() and cfg.nbs_path/'index.ipynb' not in fns: fns.insert(0, cfg.nbs_path/'index.ipynb')
    pages = {docs.page_name(fn, cfg.nbs_path): fn for fn in fns}
    apis = api_entries()
    srv,base = serve(site)
    try:
        for page,fn in pages.items():
            title,n_plots = nb_info(fn)
            try: status = urlopen(base+page, timeout=30).status
            except Exception as e: status = e
            if status!=200: rep(page, [f"not served: {status}"]); continue
            mine = [(nm,o,a) for mod,nm,o,p,a in apis if p==page]
            soup = BeautifulSoup(chromium(base+page, '--dump-dom'), 'html.parser')
            probs,n_img = check_page(soup, base, page, title, n_plots if plots else 0, mine)
            rep(f"{page}: title {title!r}, {len(mine)} API entries, {n_img} images" + (f" ({n_plots} plotting cells)" if n_plots else ''), probs)
        if file_glob=='*.ipynb':
            missing = [f"{nm} ({mod}) is documented at {p}, which is not a page" for mod,nm,o,p,a in apis if p not in pages]
            rep(f"every API doc link points at a page ({len(apis)} entries)", missing)
        rep_search(rep, base, pages)
        shot = Path(site)/'index.png'
        chromium(base+'index.html', f'--screenshot={shot}', '--window-size=1280,1000')
        ok = shot.exists() and shot.read_bytes()[:8]==b'\x89PNG\r\n\x1a\n' and shot.stat().st_size>10_000
        rep(f"screenshot of the index page: {shot}", [] if ok else ["no screenshot"])
    finally: srv.shutdown()
    return rep

def _img_ok(base, page, src):
    "Whether image `src` on `page` is an embedded image or a file the server returns"
    if src.startswith('data:image/'): return True
    try:
        with urlopen(base + str(Path(page).parent/src).removeprefix('./'), timeout=30) as r: return r.status==200 and len(r.read())>100
    except Exception: return False

def rep_search(rep, base, pages):
    "The search box finds the first module page by its title"
    mods = [p for p in pages if p!='index.html']
    if not mods: return
    title = nb_info(pages[mods[0]])[0]
    url = f"{base}search.html?q={quote(title)}"
    soup = BeautifulSoup(chromium(url, '--dump-dom', '--virtual-time-budget=15000'), 'html.parser')
    res = soup.find(id='search-results')
    hrefs = [a.get('href', '') for a in res.find_all('a')] if res else []
    rep(f"search for {title!r} finds {mods[0]}", [] if any(h.split('?')[0].split('#')[0].endswith(mods[0]) for h in hrefs)
        else [f"results link to {hrefs[:5]}"])

@call_parse
def main(no_build:bool=False, # test the _site/ already built
         dest:str='_site', # site folder, relative to the repo root
         execute:bool=False, # run every notebook again instead of using the outputs stored in them
         file_glob:str='*.ipynb'): # only these notebooks' pages (to check a page quickly)
    "Build the docs site and test it in headless Chromium"
    os.chdir(ROOT)
    os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('WANDB_MODE', 'disabled')
    find_chromium()
    t0 = time.time()
    if not no_build:
        try: docs.build(dest, execute=execute, file_glob=file_glob)
        except RuntimeError as e: print(e); print("docs: 0 passed, 1 failed (build)"); sys.exit(1)
    site = ROOT/dest
    if not (site/'index.html').exists(): sys.exit(f"docs: {site}/index.html not found; build the site first (python tools/docs.py)")
    rep = test_site(site, file_glob, plots=True)
    print(f"docs: {rep.passed} passed, {len(rep.failed)} failed ({time.time()-t0:.0f}s)")
    if rep.failed: sys.exit(1)
