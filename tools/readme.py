"Write README.md from nbs/index.ipynb without Quarto (markdown cells verbatim but for image paths, visible code cells as code blocks, the\nstored Markdown output of `#| echo: false` cells, which render measured results from bench/results/)."
import json, sys
from pathlib import Path

def render(nb_path):
    nb = json.loads(Path(nb_path).read_text())
    out = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src: continue
        if c['cell_type'] == 'markdown': out.append(src.replace('](images/', '](nbs/images/'))   # README sits above nbs/
        elif c['cell_type'] == 'code' and src.startswith('#| echo: false'):
            md = [''.join(o['data']['text/markdown']) for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
            if not md: sys.exit(f"FAIL: a results cell of nbs/index.ipynb has no stored Markdown output (run python tools/run_nbs.py --file_re '^index')")
            out.extend(m.strip() for m in md)
        elif c['cell_type'] == 'code' and not src.startswith('#| hide'):
            out.append(f"```python\n{src}\n```")
    return '<!-- generated from nbs/index.ipynb by tools/readme.py; edit the notebook, not this file -->\n\n' + '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    text = render(root/'nbs'/'index.ipynb')
    if '--check' in sys.argv:
        if (root/'README.md').read_text() != text: sys.exit("FAIL: README.md is out of step with nbs/index.ipynb (run python tools/readme.py)")
    else: (root/'README.md').write_text(text)
