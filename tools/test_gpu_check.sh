#!/usr/bin/env bash
# CPU-side test of bench/gpu_check.sh: without a GPU it must stop within seconds, before installing anything,
# with exit code 2 and a one-line message saying no CUDA GPU was found. Two fake environments: an nvidia-smi that
# fails (driver missing) and no nvidia-smi at all; in both, torch sees no GPU (CUDA_VISIBLE_DEVICES is empty).
#   bash tools/test_gpu_check.sh
set -u
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-$(command -v python3)}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/bin"
printf '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n' > "$TMP/bin/nvidia-smi"
chmod +x "$TMP/bin/nvidia-smi"
fails=0
check() {   # check NAME PATH
  local name=$1 path=$2 out=$TMP/out_$1 t rc dt
  t=$(date +%s)
  env PATH="$path" PYTHON="$PY" OUT="$out" WORK="$TMP/work_$name" CUDA_VISIBLE_DEVICES= bash bench/gpu_check.sh >"$TMP/$name.stdout" 2>"$TMP/$name.stderr"
  rc=$?; dt=$(( $(date +%s) - t ))
  local ok=1
  [ $rc -eq 2 ] || { echo "FAIL $name: exit code $rc, expected 2"; ok=0; }
  grep -q '^error: no CUDA GPU found' "$TMP/$name.stderr" || { echo "FAIL $name: no 'error: no CUDA GPU found' on stderr:"; cat "$TMP/$name.stderr"; ok=0; }
  [ $dt -le 30 ] || { echo "FAIL $name: took $dt s, expected seconds"; ok=0; }
  [ ! -e "$TMP/work_$name" ] || { echo "FAIL $name: it went on past the GPU check (made $TMP/work_$name)"; ok=0; }
  grep -qi 'pip' "$out/gpu_check.log" && { echo "FAIL $name: it ran pip before the GPU check"; ok=0; }
  [ $ok -eq 1 ] && echo "ok   $name: exit 2 in $dt s: $(head -1 "$TMP/$name.stderr")" || fails=1
}
command -v nvidia-smi >/dev/null 2>&1 && echo "note: this machine has an nvidia-smi; the fake ones below shadow it only in the first case"
check failing_nvidia_smi "$TMP/bin:$PATH"
# no nvidia-smi: a PATH of the system folders only (python is given by its full path)
check no_nvidia_smi "/usr/local/bin:/usr/bin:/bin"
[ $fails -eq 0 ] && echo "test_gpu_check: all passed" || { echo "test_gpu_check: FAILED"; exit 1; }
