#!/usr/bin/env bash
# The test suite: notebooks clean, library in sync, then every notebook run as a test.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TRANSFORMERS_VERBOSITY=error
echo "== nbdev_clean leaves no diff"
nbdev_clean
if ! git diff --quiet -- nbs; then git --no-pager diff --stat -- nbs; echo "FAIL: notebooks are not clean (run nbdev_clean and commit)"; exit 1; fi
echo "== nbdev_export leaves no diff"
nbdev_export
if [ -n "$(git status --porcelain -- echonet_ef)" ]; then git status --porcelain -- echonet_ef; echo "FAIL: library out of sync with notebooks (run nbdev_export and commit)"; exit 1; fi
echo "== README.md in step with nbs/index.ipynb"
python tools/readme.py --check
echo "== nbdev_test"
# cells flagged `#| dali` need NVIDIA DALI: run them where it imports, merged with any --flags given on the command line
flags=""; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --flags) flags="$flags ${2:-}"; shift $(( $# > 1 ? 2 : 1 ));;
    --flags=*) flags="$flags ${1#--flags=}"; shift;;
    *) args+=("$1"); shift;;
  esac
done
if python -c "import nvidia.dali" >/dev/null 2>&1; then flags="dali $flags"; else echo "(NVIDIA DALI not installed: cells flagged dali skipped)"; fi
read -r -a _f <<< "$flags"; flags="${_f[*]:-}"
nbdev_test --n_workers "${NBDEV_TEST_WORKERS:-2}" --timing ${flags:+--flags "$flags"} ${args[@]+"${args[@]}"}
echo "$(ls nbs/*.ipynb | grep -vc '/_') passed, 0 failed"
