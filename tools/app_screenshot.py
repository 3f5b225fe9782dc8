"""Screenshot of the live EF predictor app (`echonet_ef.app.EFPredictorApp`) for its docs page (`nbs/09_app.ipynb`).

    python tools/app_screenshot.py                       # writes nbs/images/app.png
    python tools/app_screenshot.py --out app.png --width 1200 --timeout 300

A static docs page cannot run widgets, so this renders the app for real: a tiny trained model (`RUN_OVERRIDES`) and a
small synthetic dataset (cached by `echonet_ef.test_utils`), a temporary notebook that loads the model, opens the
dataset, and uploads a scanner-like DICOM export without extension (`IM_0001`, written by `make_dicom` of
`echonet_ef.convert` from one TEST video) through the app's own upload handler, so that the picture shows what a
clinician sees for a DICOM: the EF, whether its interval is calibrated, and the synthetic-data model's warning. Voilà
serves it on 127.0.0.1 and headless Chromium (driven over the DevTools protocol) opens it, waits until the EF result,
the warnings and the pictures are on screen and takes the screenshot, cropped to the app. Every process it starts
(Voilà and its kernel, Chromium) is stopped on exit, on error, on Ctrl-C and when `--timeout` runs out; if the app
does not render, it exits 1 with a one-line message.

Needs: `voila` (which brings `websocket-client`), Pillow, and Chromium (Debian: `apt-get install -y chromium`, or set
$CHROMIUM). The browser reaches nothing but 127.0.0.1.
"""
import io, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from urllib.request import urlopen

from fastcore.script import call_parse

ROOT = Path(__file__).resolve().parent.parent
CHROME_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync',
                '--disable-dev-shm-usage',
                '--disable-extensions', '--hide-scrollbars', '--mute-audio', '--force-device-scale-factor=1',
                '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1', '--proxy-server=direct://']
ENV = dict(HF_HUB_OFFLINE='1', WANDB_MODE='disabled', TRANSFORMERS_VERBOSITY='error', PYTHONWARNINGS='ignore')
# The model shown: `tiny_run` trained longer, with a stronger head dropout and learning rate. The tests' 4-step run
# barely moves its head away from the mean EF, so its MC-dropout samples agree to 0.01 EF and the picture would show a
# zero-width interval; this one (about a minute on 2 CPU cores, cached afterwards) shows an interval a few EF wide.
RUN_OVERRIDES = ('model.head_dropout=0.5', 'optim.lr_head=3e-2', 'optim.lr_backbone=3e-3', 'train.max_steps=40',
                 'train.val_every=40')

class ScreenshotError(Exception): "The app could not be rendered or captured; the message is one line"

# ---- small helpers (testable without a browser)

def free_port()->int:
    "A TCP port on 127.0.0.1 that is free now"
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def shrink_png(png:bytes, max_bytes:int=300_000, min_width:int=600)->bytes:
    "`png` re-encoded (optimised, then 256 colours, then downscaled) until it is under `max_bytes`"
    from PIL import Image
    im = Image.open(io.BytesIO(png)).convert('RGB')
    def enc(im):
        buf = io.BytesIO(); im.save(buf, 'PNG', optimize=True); return buf.getvalue()
    out = enc(im)
    if len(out) <= max_bytes: return out
    while True:
        out = enc(im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
        if len(out) <= max_bytes or im.width <= min_width: return out
        im = im.resize((int(im.width*0.85), int(im.height*0.85)), Image.Resampling.LANCZOS)

def crop_box(rect:dict, page_w:int, page_h:int, pad:int=12)->dict:
    "A DevTools screenshot clip around `rect` (x, y, width, height in CSS px) with `pad` px, inside the page"
    x0, y0 = max(0, int(rect['x']) - pad), max(0, int(rect['y']) - pad)
    x1, y1 = min(page_w, int(rect['x'] + rect['width']) + pad), min(page_h, int(rect['y'] + rect['height']) + pad)
    if x1 <= x0 or y1 <= y0: raise ScreenshotError(f"the app has an empty box on the page: {rect}")
    return dict(x=x0, y=y0, width=x1-x0, height=y1-y0, scale=1)

def error_line(text:str)->str:
    "The line of an error text that names the error (a traceback's `XError: ...` line), else its first line"
    lines = [l.strip() for l in text.splitlines() if l.strip().strip('-')]
    named = [l for l in lines if re.match(r'[\w.]*(Error|Exception)\b', l)]
    return ((named or lines or [''])[-1 if named else 0])[:300]

def find_chromium()->str:
    "Path of Chromium: `$CHROMIUM`, else chromium, chromium-browser or google-chrome on PATH"
    for o in [os.environ.get('CHROMIUM'), 'chromium', 'chromium-browser', 'google-chrome']:
        if o and shutil.which(o): return shutil.which(o)
    raise ScreenshotError("Chromium not found; install it (Debian: apt-get install -y chromium) or set $CHROMIUM")

# ---- the notebook Voilà serves

NB_CODE = [
"""import warnings; warnings.filterwarnings('ignore')
from pathlib import Path
from echonet_ef.app import EFPredictorApp""",
"""app = EFPredictorApp(checkpoint='', data='')   # empty boxes: nothing is opened until asked
app.load_model('demo_run/run')                   # where `echonet_ef_demo` writes its run and its data
app.open_folder('demo_run/data')
dicom = Path('export')/'IM_0001'                 # a scanner's export: a DICOM cine without extension
app.handle_upload(({'name': dicom.name, 'type': '', 'size': dicom.stat().st_size,
                    'content': memoryview(dicom.read_bytes())},))    # what the upload button does with the file
if app.result is not None:                       # a frame mid-video that the model sampled (the
    # Play widget too: its browser-side link sets the slider to its own value when the page shows)
    app.play.value = app.slider.value = app.result['attention_frames'][len(app.result['attention_frames'])//2]""",
"""app.widget""",
]

def write_notebook(folder:Path, run:Path, data:Path, name:str)->Path:
    "`folder/app.ipynb` uploading video `name` as `export/IM_0001`, with the run and the dataset linked in as `demo_run/`"
    import nbformat
    from echonet_ef.video import read_video
    from echonet_ef.test_utils import make_dicom
    (folder/'demo_run').mkdir()
    (folder/'demo_run'/'run').symlink_to(Path(run).resolve(), target_is_directory=True)
    (folder/'demo_run'/'data').symlink_to(Path(data).resolve(), target_is_directory=True)
    frames = read_video(Path(data)/'Videos'/f'{name}.avi')
    (folder/'export').mkdir()
    make_dicom(folder/'export'/'IM_0001', frames, 'MONOCHROME2', jpeg=True)     # JPEG: a small file, as scanners do
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NB_CODE])
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, folder/'app.ipynb')
    return folder/'app.ipynb'

def first_test_video(data:Path)->str:
    "Name of the first TEST video in the dataset's FileList"
    from echonet_ef.data import read_filelist
    fl = read_filelist(data, check_videos=False)
    test = fl[fl.Split.str.upper() == 'TEST']
    if not len(test): raise ScreenshotError(f"{data}: no TEST video in FileList.csv")
    return str(test.FileName.iloc[0])

# ---- processes: started in their own session, stopped with everything they spawned

def descendants(pid:int)->list:
    "Pids of all live descendants of `pid` (from /proc; empty where there is no /proc)"
    kids = {}
    for p in Path('/proc').glob('[0-9]*'):
        with suppress(OSError, ValueError, IndexError):
            ppid = int((p/'stat').read_text().rsplit(')', 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        new = kids.get(todo.pop(), []); out += new; todo += new
    return out

@contextmanager
def started(args:list, name:str, grace:float=10, **kw):
    "Run `args` in a new session for the block; then SIGTERM it, and SIGKILL it and its descendants after `grace` s"
    proc = subprocess.Popen(args, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
    try: yield proc
    finally:
        kids = descendants(proc.pid)           # noted before they are reparented
        if proc.poll() is None:
            with suppress(ProcessLookupError): proc.terminate()
            try: proc.wait(grace)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)   # anything left in its group
        deadline = time.monotonic() + grace
        for k in kids:                        # e.g. the kernel, which jupyter_client starts in a session of its own
            while Path(f'/proc/{k}').exists() and time.monotonic() < deadline: time.sleep(0.1)
            with suppress(ProcessLookupError, PermissionError): os.kill(k, signal.SIGKILL)

def wait_port(port:int, proc, timeout:float, what:str):
    "Wait until 127.0.0.1:`port` accepts connections, or raise if `proc` exits or `timeout` s pass"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise ScreenshotError(f"{what} exited with code {proc.returncode} before it listened on port {port}")
        with suppress(OSError):
            with socket.create_connection(('127.0.0.1', port), timeout=2): return
        time.sleep(0.3)
    raise ScreenshotError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")

# ---- Chromium over the DevTools protocol

class DevTools:
    "A minimal synchronous DevTools-protocol client for one page target"
    def __init__(self, ws_url:str):
        import websocket
        self.ws, self.n, self.events = websocket.create_connection(ws_url, timeout=30, suppress_origin=True), 0, []
    def __call__(self, method:str, **params):
        self.n += 1; self.ws.send(json.dumps(dict(id=self.n, method=method, params=params)))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == self.n:
                if 'error' in msg: raise ScreenshotError(f"DevTools {method}: {msg['error'].get('message')}")
                return msg.get('result', {})
            if 'method' in msg: self.events.append(msg)
    def eval(self, js:str):
        r = self('Runtime.evaluate', expression=js, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r:
            d = r['exceptionDetails']
            raise ScreenshotError(f"page script failed: {d.get('exception', {}).get('description') or d.get('text')}")
        return r['result'].get('value')
    def close(self):
        with suppress(Exception): self.ws.close()

def devtools_url(profile:Path, proc, timeout:float=30)->str:
    "The websocket URL of Chromium's first page, once its DevTools port is up"
    end, f = time.monotonic() + timeout, profile/'DevToolsActivePort'
    while time.monotonic() < end:
        if proc.poll() is not None: raise ScreenshotError(f"Chromium exited with code {proc.returncode} at start")
        if f.exists() and (lines := f.read_text().split()):
            with suppress(OSError, ValueError):
                with urlopen(f'http://127.0.0.1:{lines[0]}/json/list', timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get('type') == 'page']
                if pages: return pages[0]['webSocketDebuggerUrl']
        time.sleep(0.2)
    raise ScreenshotError(f"Chromium's DevTools did not come up within {timeout:g} s")

# What the page shows: the EF headline, whether every picture of the app is loaded, an error if any, and the app's box
STATE_JS = r"""(() => {
  const txt = e => (e && e.innerText || '').trim();
  const ef = document.querySelector('b.ef');
  let top = ef;
  while (top && top.parentElement && top.parentElement.closest('.jupyter-widgets'))
    top = top.parentElement.closest('.jupyter-widgets');
  const imgs = top ? [...top.querySelectorAll('img')] : [];
  const errs = [...document.querySelectorAll('div.error')].map(txt).filter(t => t).concat(
               [...document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')].map(txt)
                 .filter(t => /Error|Traceback/.test(t)));
  if (/There was an error when executing cell|Traceback \(most recent call last\)/.test(txt(document.body)))
    errs.push(txt(document.body));
  let box = null;
  if (top) {            // the app's box, its right edge at its rightmost text or control rather than the window's
    const r = top.getBoundingClientRect(); let right = r.left;
    const walk = document.createTreeWalker(top, NodeFilter.SHOW_TEXT); let n;
    while ((n = walk.nextNode())) if (n.textContent.trim()) {
      const rg = document.createRange(); rg.selectNodeContents(n);
      for (const b of rg.getClientRects()) right = Math.max(right, b.right); }
    const boxes = 'img, input, select, button, .widget-slider, .widget-progress, [style*="background"]';
    for (const e of top.querySelectorAll(boxes)) {
      const b = e.getBoundingClientRect(); if (b.width && b.height) right = Math.max(right, b.right); }
    box = {x: r.x + scrollX, y: r.y + scrollY, width: Math.min(r.width, right - r.left), height: r.height};
  }
  const warn = top ? txt(top.querySelector('div.warnings')) : '';
  return {ef: txt(ef), warnings: warn, images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          errors: errs, box: box,
          page: {width: document.documentElement ? document.documentElement.scrollWidth : 0,
                 height: document.documentElement ? document.documentElement.scrollHeight : 0}};
})()"""

def capture(url:str, profile:Path, width:int, timeout:float, verbose:bool=False)->bytes:
    "PNG of the app at `url` once its EF, its warnings and its pictures show, cropped to the app"
    args = [find_chromium(), *CHROME_FLAGS, f'--user-data-dir={profile}', '--remote-debugging-port=0',
            f'--window-size={width},1000', 'about:blank']
    logs = None if verbose else subprocess.DEVNULL
    with started(args, 'Chromium', grace=5, stdout=subprocess.DEVNULL, stderr=logs) as proc:
        cdp = DevTools(devtools_url(profile, proc))
        try:
            cdp('Emulation.setDeviceMetricsOverride', width=width, height=1000, deviceScaleFactor=1, mobile=False)
            cdp('Page.enable'); cdp('Network.enable')
            cdp('Page.navigate', url=url)
            end, st, script_err = time.monotonic() + timeout, {}, None
            while True:
                try: st = cdp.eval(STATE_JS) or {}
                except ScreenshotError as e: st, script_err = {}, e      # e.g. while the page is being replaced
                if st.get('errors'): raise ScreenshotError(f"the app shows an error: {error_line(st['errors'][0])}")
                if st.get('ef') and st.get('warnings') and st.get('images') and st['loaded'] == st['images']: break
                if time.monotonic() > end:
                    why = f"; {script_err}" if script_err and not st else ''
                    raise ScreenshotError(f"the app did not render within {timeout:g} s "
                                          f"(EF shown: {st.get('ef') or 'no'}, warnings shown: "
                                          f"{'yes' if st.get('warnings') else 'no'}, "
                                          f"pictures loaded: {st.get('loaded', 0)}/{st.get('images', 0)}){why}")
                time.sleep(0.5)
            time.sleep(1.0)                        # let the layout settle (fonts, the plot's final size)
            st = cdp.eval(STATE_JS)
            h = max(1000, int(st['page']['height']))
            cdp('Emulation.setDeviceMetricsOverride', width=width, height=h, deviceScaleFactor=1, mobile=False)
            time.sleep(0.5); st = cdp.eval(STATE_JS)
            clip = crop_box(st['box'], width, int(st['page']['height']))
            import base64
            png = base64.b64decode(cdp('Page.captureScreenshot', format='png', clip=clip,
                                       captureBeyondViewport=True)['data'])
            local = ('http://127.0.0.1', 'ws://127.0.0.1', 'data:', 'blob:', 'about:')
            outside = sorted({e['params']['request']['url'] for e in cdp.events
                              if e.get('method') == 'Network.requestWillBeSent'
                              and not e['params']['request']['url'].startswith(local)})
            if verbose:       # Voilà's page template links FontAwesome from a CDN; the widgets bring their own copy
                print(f"app_screenshot: {st['ef']}; clip {clip}; blocked outside URLs: {', '.join(outside) or 'none'}",
                      file=sys.stderr)
            return png
        finally:
            with suppress(Exception): cdp('Browser.close')
            cdp.close()

# ---- the whole run

class _Timeout(BaseException): pass

@contextmanager
def time_limit(seconds:float):
    "Raise `ScreenshotError` in the block once `seconds` have passed (SIGALRM, main thread only)"
    def on_alarm(*_): raise _Timeout()
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try: yield
    except _Timeout: raise ScreenshotError(f"the whole run took over {seconds:g} s (--timeout)") from None
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)

@contextmanager
def stoppable():
    "SIGTERM, SIGHUP and Ctrl-C end the block by an exception (so its clean-up runs); a second one is ignored"
    sigs = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    def on_signal(sig, _):
        for s in sigs: signal.signal(s, signal.SIG_IGN)          # the clean-up is not interrupted again
        raise KeyboardInterrupt() if sig == signal.SIGINT else SystemExit(f"app_screenshot: stopped by signal {sig}")
    old = {s: signal.signal(s, on_signal) for s in sigs}
    try: yield
    finally:
        for s, h in old.items(): signal.signal(s, h)

def check_tools():
    "Raise a `ScreenshotError` naming what to install if Voilà, websocket-client, Pillow or Chromium is missing"
    import importlib.util
    needs = (('voila', 'voila'), ('websocket', 'websocket-client'), ('PIL', 'pillow'), ('nbformat', 'nbformat'))
    missing = [pkg for mod, pkg in needs
               if importlib.util.find_spec(mod) is None]
    if missing: raise ScreenshotError(f"missing Python package(s): pip install {' '.join(missing)}")
    find_chromium()

def screenshot(out:Path, width:int=1200, timeout:float=300, max_kb:int=300, video:str=None, verbose:bool=False)->dict:
    "Render the app after a DICOM upload in Voilà + headless Chromium and write the PNG to `out`; returns a summary"
    t0 = time.monotonic()
    check_tools()
    with stoppable(), ExitStack() as stack, time_limit(timeout):   # the time limit ends before the clean-up starts
        from echonet_ef.test_utils import tiny_run, synth_data
        run, data = tiny_run(*RUN_OVERRIDES), synth_data()
        name = video or first_test_video(data)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='echonet_app_screenshot_')))
        nb = write_notebook(tmp, run, data, name)
        (tmp/'jupyter_config').mkdir(); (tmp/'jupyter_runtime').mkdir(); (tmp/'profile').mkdir()
        port = free_port()
        env = {**os.environ, **ENV, 'JUPYTER_CONFIG_DIR': str(tmp/'jupyter_config'),
               'JUPYTER_RUNTIME_DIR': str(tmp/'jupyter_runtime'),
               'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}
        log = open(tmp/'voila.log', 'w+')
        stack.callback(log.close)
        try:
            voila = stack.enter_context(started(
                [sys.executable, '-m', 'voila', nb.name, '--no-browser', '--Voila.ip=127.0.0.1', f'--Voila.port={port}',
                 '--Voila.port_retries=0', '--VoilaConfiguration.show_tracebacks=True',
                 '--VoilaConfiguration.theme=light'],
                'Voilà', cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT))
            base = f'http://127.0.0.1:{port}/'
            wait_port(port, voila, 60, 'Voilà')
            png = capture(base, tmp/'profile', width, max(30, timeout - (time.monotonic() - t0) - 15), verbose)
        except ScreenshotError:
            if verbose: log.seek(0); sys.stderr.write(log.read()[-4000:])
            raise
        small = shrink_png(png, max_kb*1000)
        from echonet_ef.core import atomic_write
        with atomic_write(out, 'wb') as f: f.write(small)
    from PIL import Image
    w, h = Image.open(out).size
    return dict(out=str(out), video=name, size=f'{w}x{h}', kb=round(len(small)/1000, 1),
                seconds=round(time.monotonic()-t0, 1))

@call_parse
def main(out:str=None, # where to write the PNG; default: nbs/images/app.png in this repository
         width:int=1200, # browser window width (CSS px)
         timeout:float=300, # limit on the whole run (s)
         max_kb:int=300, # the PNG is reduced (256 colours, then downscaled) until it is at most this size (kB)
         video:str=None, # FileName of the dataset video to upload as a DICOM (default: the first TEST video)
         verbose:bool=False # show Chromium's log, the outside URLs it blocked and (on failure) Voilà's log
        ):
    "Render the EF predictor app after uploading a DICOM export, in Voilà and headless Chromium; save a PNG screenshot"
    out = Path(out) if out else ROOT/'nbs'/'images'/'app.png'
    try: s = screenshot(out, width, timeout, max_kb, video, verbose)
    except KeyboardInterrupt: sys.exit("app_screenshot: interrupted")
    except ScreenshotError as e: sys.exit(f"app_screenshot: {e}")
    except Exception as e: sys.exit(f"app_screenshot: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}")
    print(f"app_screenshot: wrote {s['out']} ({s['size']} px, {s['kb']} kB; video {s['video']}) in {s['seconds']} s")
