#!/usr/bin/env bash
# One-shot GPU check of echonet_ef: one H100/H200 with 16 CPU cores, under 9 minutes, everything into one folder.
#
#   bash bench/gpu_check.sh                  # results in $OUT if set, else bench/results/gpu_<date>
#   bash bench/gpu_check.sh --fetch-wheels   # HERE (needs PyPI): the wheels the device machine lacks -> bench/results/wheels
#
# Stages, each under its own `timeout` and within a global deadline (BUDGET_S, default 530 s), each logging to a file:
#   setup       GPU present? (else exit 2 at once), install only what is missing (wheels carried in WHEELS_DIR,
#               then `pip install -e . --no-deps`), exit 3 if a package the checks need cannot be had
#   data        a synthetic MJPG dataset at 112 px (160 videos) shared by the later stages
#   train_step  bench/train_step.py, base model: fp32/fp16/bf16 x 112/224, SDPA vs eager attention, largest batch, compile
#   base_run    a few hundred optimizer steps of VideoMAE-base (pretrained if cached, else random init) at 112 px:
#               metrics.csv and loss_curve.png, and whether the training loss fell
#   pretrain    bench/pretrain_step.py: VideoMAE-base masked-video pretraining steps/s at 224 px (bf16) and the largest
#               batch, then 40 steps of `echonet_ef_pretrain` at 112 px on the dataset (logged in gpu_check.log)
#   loaders     bench/loaders.py: naive / OpenCV float contract / OpenCV uint8 (+ transform on the GPU) / DALI CPU / DALI GPU
#               clips/s at 224 px with 8 workers, to set beside train_step's clips/s of VideoMAE-base (bf16)
#   nbdev_cuda  `nbdev_test --flags cuda` on the notebooks that hold `#| cuda` cells (DALI-equivalence checks)
# The folder holds at most 8 files (the device tool brings back 8): gpu_check.log (this script's log: setup, summary,
# RESULT), train_step.log, train_step.json, base_run.log, metrics.csv, loss_curve.png, loaders.log, nbdev_cuda.log.
# Exit status: 0 all stages ok or skipped for a stated reason; 1 a stage failed or timed out; 2 no GPU; 3 setup failed.
set -u
cd "$(dirname "$0")/.." || exit 3
ROOT=$PWD
PY=${PYTHON:-python3}
WHEELS_DIR=${WHEELS_DIR:-bench/results/wheels}
# not in the device image (KINDS.md's package list): the notebook runner and fastcore; pinned to this project's versions
WHEELS="fastcore==1.14.5 nbdev==2.4.14 execnb==0.1.18 ghapi==2.0.3 fastspec==0.1.0 fastgit==0.1.4 astunparse==1.6.3
asttokens==3.0.2 watchdog==7.1.0 ipython==9.18.1 ipython_pygments_lexers==1.1.1 jedi==0.20.1 parso==0.8.7
matplotlib-inline==0.2.2 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53 wcwidth==0.9.4 stack_data==0.6.3
executing==2.3.0 pure_eval==0.2.4 traitlets==5.16.1"

if [ "${1:-}" = "--fetch-wheels" ]; then   # run where PyPI is reachable; then carry WHEELS_DIR to the device machine
  mkdir -p "$WHEELS_DIR"
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS_DIR" $WHEELS 2> >(grep -v "is ignored: it is neither" >&2) || { echo "error: pip download failed" >&2; exit 3; }
  du -sh "$WHEELS_DIR"; ls "$WHEELS_DIR"; exit 0
fi

OUT=${OUT:-bench/results/gpu_$(date +%Y%m%d_%H%M%S)}
mkdir -p "$OUT" || { echo "error: cannot create the results folder $OUT" >&2; exit 3; }
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_check.log
WORK=${WORK:-/tmp/echo_gpu_check}
BUDGET_S=${BUDGET_S:-530}
T0=$(date +%s)
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
say() { echo "$@" | tee -a "$LOG"; }
: > "$LOG"
say "gpu_check: $(date '+%F %T'), repo $ROOT, results $OUT, python $(command -v $PY), budget ${BUDGET_S}s"

# ---- 1. a GPU, or stop now (seconds, before anything is installed) ----
SMI="nvidia-smi: not found"
if command -v nvidia-smi >/dev/null 2>&1; then
  SMI=$(timeout 20 nvidia-smi -L 2>&1) || SMI="nvidia-smi failed: $(echo "$SMI" | head -1)"
fi
CUDA=$(timeout 60 $PY -c "import torch; print(torch.cuda.is_available() and torch.cuda.device_count() > 0)" 2>&1 | tail -1)
if [ "$CUDA" != "True" ]; then
  say "error: no CUDA GPU found ($(echo "$SMI" | head -1); torch.cuda.is_available(): ${CUDA:-no torch}); bench/gpu_check.sh needs one NVIDIA GPU" >&2
  exit 2
fi
say "GPU: $(echo "$SMI" | head -1)"

# ---- stage runner: own timeout, own log, within the global deadline ----
STAGES=(); RESULTS=(); FAILED=0
record() { STAGES+=("$(printf '%-11s %-8s %6ss  %s' "$1" "$2" "$3" "$4")"); say "== $1: $2 in $3 s ${4:+($4)}"; }
stage() {   # stage NAME LIMIT_S LOGFILE CMD...
  local name=$1 limit=$2 log=$3; shift 3
  local left=$(( BUDGET_S - ($(date +%s) - T0) ))
  [ $left -lt $limit ] && limit=$left
  if [ $limit -lt 15 ]; then record "$name" SKIP 0 "global budget of ${BUDGET_S}s spent"; return 0; fi
  say "== $name (timeout ${limit}s, log $(basename "$log"))"
  local t=$(date +%s) rc n0; n0=$(cat "$log" 2>/dev/null | wc -l)
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1; rc=$?
  local dt=$(( $(date +%s) - t ))
  tail -n +$((n0+1)) "$log" | tail -n 4 | sed 's/^/   | /' | tee -a "$LOG"
  local res; res=$(tail -n +$((n0+1)) "$log" | grep -h '^RESULT ' | tail -1 | sed 's/^RESULT //')
  if [ -z "$res" ] && [ "$name" = train_step ] && [ -f "$OUT/train_step.json" ]; then   # killed: what it had measured
    res=$($PY -c "import json,sys; r=json.load(open(sys.argv[1]))['result'] or {}; print(' '.join(f'{k}={v}' for k,v in r.items()))" "$OUT/train_step.json" 2>/dev/null)
  fi
  [ -n "$res" ] && RESULTS+=("$res")
  if [ $rc -eq 0 ]; then record "$name" ok $dt "limit ${limit}s"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then record "$name" TIMEOUT $dt "killed at ${limit}s"; FAILED=1
  else record "$name" FAIL $dt "exit $rc, see $(basename "$log")"; FAILED=1; fi
}
have() { [ -z "$(absent "$1")" ]; }
absent() {   # the modules among "$@" that cannot be found (one python start for all)
  $PY -c "
import importlib.util as u, sys
def found(m):
    try: return u.find_spec(m) is not None
    except Exception: return False
print(' '.join(m for m in sys.argv[1:] if not found(m)))" "$@" 2>/dev/null
}

# ---- 2. setup: install only what is missing ----
setup() {
  local t=$(date +%s) missing
  missing=($(absent fastcore nbdev execnb IPython))
  if [ ${#missing[@]} -gt 0 ] && ls "$WHEELS_DIR"/*.whl >/dev/null 2>&1; then
    say "missing: ${missing[*]}; installing the carried wheels from $WHEELS_DIR into $WORK/site"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS_DIR"/*.whl >>"$LOG" 2>&1 \
      && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}" PATH="$WORK/site/bin:$PATH"
  elif [ ${#missing[@]} -gt 0 ]; then
    say "missing: ${missing[*]}; no wheels in $WHEELS_DIR, trying the package index (fails fast offline)"
    timeout 60 $PY -m pip install -q --retries 0 --timeout 5 fastcore==1.14.5 nbdev==2.4.14 execnb >>"$LOG" 2>&1 || say "   (pip could not reach a registry)"
  fi
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # scripts under bench/ must import this tree's echonet_ef
  if have echonet_ef && $PY -c "import echonet_ef, sys; sys.exit(not echonet_ef.__file__.startswith('$ROOT'))" 2>/dev/null; then say "echonet_ef already installed from this tree"
  elif $PY -m pip install -q --no-deps --no-build-isolation -e . >>"$LOG" 2>&1; then say "pip install -e . --no-deps: ok"
  else say "pip install -e . failed; using PYTHONPATH=$ROOT instead"; export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"; fi
  local need opt
  need=($(absent torch transformers safetensors cv2 numpy pandas yaml tqdm matplotlib psutil fastcore echonet_ef.train))
  opt=($(absent nbdev execnb IPython nvidia.dali))
  $PY - >>"$LOG" 2>&1 <<'EOF'
import importlib
for m in ['torch', 'transformers', 'cv2', 'fastcore', 'nbdev', 'nvidia.dali']:
    try: print(f"   {m} {getattr(importlib.import_module(m), '__version__', '?')}")
    except Exception as e: print(f"   {m}: not available ({type(e).__name__})")
import torch; print(f"   GPU {torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory/2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF
  tail -n 7 "$LOG"
  [ ${#opt[@]} -gt 0 ] && say "optional, missing: ${opt[*]} (the stages that need them are skipped)"
  if [ ${#need[@]} -gt 0 ]; then
    say "error: required packages missing: ${need[*]}; carry them as wheels: here run 'bash bench/gpu_check.sh --fetch-wheels', then call the device tool with carry=['$WHEELS_DIR']"
    record setup FAIL $(( $(date +%s) - t )) "missing ${need[*]}"; return 3
  fi
  record setup ok $(( $(date +%s) - t )) ""
}
mkdir -p "$WORK"
# console scripts without relying on their entry points: `$PY $CLI module:function args...` (a file, so call_parse parses argv)
CLI=$WORK/cli.py
printf 'import sys, importlib\nmod, fn = sys.argv.pop(1).split(":"); sys.argv[0] = fn\ngetattr(importlib.import_module(mod), fn)()\n' > "$CLI"
setup || { printf '%s\n' "${STAGES[@]}" | tee -a "$LOG"; exit 3; }

# ---- 3. the stages ----
DATA=$WORK/data
stage data 90 "$LOG" $PY -c "
from pathlib import Path; import time
from echonet_ef.synthetic import make_dataset
t = time.time()
if not (Path('$DATA')/'FileList.csv').exists(): make_dataset('$DATA', 160, seed=0, codec='MJPG')
print(f'dataset $DATA ready in {time.time()-t:.0f} s')"

stage train_step 170 "$OUT/train_step.log" $PY bench/train_step.py --device cuda --models base --sizes 112,224 --steps 8 \
  --find-max-batch --sdpa-vs-eager --time-budget 140 --out "$OUT"

# pretrained VideoMAE-base if it is in the local HF cache, else random init (no hub access here)
if $PY -c "from huggingface_hub import try_to_load_from_cache as f; import sys; sys.exit(not isinstance(f('MCG-NJU/videomae-base', 'config.json'), str))" 2>/dev/null
then BACKBONE="model.pretrained=true optim.lr_backbone=1e-5"; say "base_run: pretrained MCG-NJU/videomae-base from the cache"
else BACKBONE="model.backbone=null model.pretrained=false optim.lr_backbone=1e-4"; say "base_run: VideoMAE-base, random init (not cached)"; fi
rm -rf "$WORK/run"
stage base_run 150 "$OUT/base_run.log" $PY "$CLI" echonet_ef.train:echonet_ef_train \
  --config configs/seed.yaml --data "$DATA" --out "$WORK/run" --quiet --set data.size=112 data.batch_size=16 data.num_workers=8 \
  data.loader=cv2 train.grad_accum=1 train.max_steps=300 train.val_every=100 train.log_every=10 train.patience=100 \
  train.keep_last=1 train.max_minutes=1.8 train.wandb=disabled $BACKBONE
cp "$WORK/run/metrics.csv" "$WORK/run/loss_curve.png" "$OUT/" 2>/dev/null
[ -f "$OUT/metrics.csv" ] && $PY - "$OUT/metrics.csv" >>"$OUT/base_run.log" 2>&1 <<'EOF'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1]).dropna(subset=['train_loss'])
first, last = d.train_loss.iloc[:3].mean(), d.train_loss.iloc[-3:].mean()
v = pd.read_csv(sys.argv[1]).dropna(subset=['val_mae']) if 'val_mae' in d else None
print(f"train loss (mean of 3 logged rows) {first:.1f} at step {d.step.iloc[0]} -> {last:.1f} at step {d.step.iloc[-1]}; "
      f"{'FELL' if last < first else 'DID NOT FALL'}; clips/s {d.clips_per_s.iloc[-1]:.0f}"
      + (f"; val MAE {v.val_mae.iloc[0]:.2f} -> {v.val_mae.iloc[-1]:.2f}" if v is not None and len(v) else ''))
print(f"RESULT base_loss_first={first:.1f} base_loss_last={last:.1f} base_loss_fell={int(last < first)} "
      f"base_steps={int(d.step.iloc[-1])} base_clips_s={d.clips_per_s.iloc[-1]:.1f}")
EOF
grep '^RESULT base_loss' "$OUT/base_run.log" >/dev/null && { RESULTS+=("$(grep -h '^RESULT base_loss' "$OUT/base_run.log" | sed 's/^RESULT //')"); grep -h 'train loss (mean' "$OUT/base_run.log" | tee -a "$LOG"; }

rm -rf "$WORK/pretrain"
stage pretrain 75 "$LOG" bash -c "$PY bench/pretrain_step.py --device cuda --size 224 --batch 32 --steps 8 --find-max-batch \
  --time-budget 35 && $PY $CLI echonet_ef.pretrain:echonet_ef_pretrain --config configs/pretrain.yaml --data $DATA \
  --out $WORK/pretrain --quiet --set model.backbone=null model.pretrained=false data.size=112 data.num_workers=8 \
  train.max_steps=40 train.val_every=20 train.grad_accum=1 train.wandb=disabled optim.lr_backbone=1e-4 optim.lr_head=1e-4"

stage loaders 75 "$OUT/loaders.log" $PY bench/loaders.py --data "$DATA" --size 224 --batch 16 --workers 8 --passes 2

NBS=$(grep -l '#| cuda' nbs/*.ipynb 2>/dev/null)
if [ -z "$NBS" ]; then record nbdev_cuda SKIP 0 "no notebook has #| cuda cells"
elif ! have nbdev || ! have execnb; then record nbdev_cuda SKIP 0 "nbdev/execnb not installed (carry the wheels)"
else
  for nb in $NBS; do
    n=$(basename "$nb" .ipynb)
    if grep -q 'dali' "$nb" && ! have nvidia.dali; then record "nb_$n" SKIP 0 "needs NVIDIA DALI, not installed here (~1 GB, too big to carry)"; continue; fi
    stage "nb_$n" 120 "$OUT/nbdev_cuda.log" $PY "$CLI" nbdev.test:nbdev_test \
      --flags "cuda dali" --path "$nb" --timing
  done
fi

# ---- 4. summary ----
say ""
say "stage       status   seconds  note            (total $(( $(date +%s) - T0 )) s of a ${BUDGET_S}s budget)"
printf '%s\n' "${STAGES[@]}" | tee -a "$LOG"
say "RESULT gpu_check_s=$(( $(date +%s) - T0 )) failed=$FAILED ${RESULTS[*]}"
exit $FAILED
