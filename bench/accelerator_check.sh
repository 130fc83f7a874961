#!/usr/bin/env bash
# One-shot accelerator check: on a GPU or TPU host, the tests of the device paths and the main benchmarks in
# under 8 minutes (each part has a time limit), into one report; --tiny runs every part's code path at toy
# sizes on the CPU (CI runs it, so that it cannot rot).
#
#   bash bench/accelerator_check.sh [--out out/accelerator_check]        # on the GPU/TPU host
#   bash bench/accelerator_check.sh --tiny --out /tmp/check              # seconds-sized, any machine
#
# Parts (each a command of its own; a failing part is reported and the others still run):
#   tests      the device-path tests: forward and gradient parity, train step, engine, exported program
#   train      bench/train_step.py: main and pretrain in bfloat16 (step time, clips/s, MFU)
#   inference  bench/inference.py: 1, 2 and 5 objects in float32 and bfloat16 (frames/s, MFU, split)
#   videos     bench/multi_video.py: many videos over the host's devices (videos/s, frames/s, scaling)
# TensorFlow is made unimportable for every part (a stub package on PYTHONPATH): the inference and
# train-step paths must not need it (the lent GPU machines have none).
# Writes OUT/report.md (machine, each part's output and status, seconds) and OUT/<part>.log; exits 1 if any
# part failed. PYTHON (default: .venv/bin/python, else python3) runs everything.
set -uo pipefail
cd "$(dirname "$0")/.."

out=out/accelerator_check
tiny=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=1 ;;
    --out) out="${2:?--out needs a folder}"; shift ;;
    *) echo "error: unknown argument $1 (expected --tiny, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
python="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
mkdir -p "$out" || { echo "error: --out $out: cannot create it" >&2; exit 2; }
stub="$(mktemp -d)"
trap 'rm -rf "$stub"' EXIT
mkdir -p "$stub/tensorflow"
echo 'raise ImportError("TensorFlow is blocked by bench/accelerator_check.sh: this path must not import it")' \
  > "$stub/tensorflow/__init__.py"
export PYTHONPATH="$stub:$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2

if [ "$tiny" = 1 ]; then
  export JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=2
  # every part's code path once, at toy sizes (compilation is most of the time)
  tests=(tests/test_inference.py -k "schedule or resize_matrices")
  train=(--configs main --dtypes bfloat16 --size 32 --batch_per_device 1 --width_divisor 4 --repeats 1 --devices 1)
  inference=(--height 32 --width 48 --frames 4 --chunk 4 --objects 2 --dtypes bfloat16 --repeats 1 --width_divisor 4)
  videos=(--tiny --devices 1 2)
  limits=(300 300 300 300)
else
  tests=(tests/test_parity.py tests/test_grad_parity.py tests/test_train_step.py tests/test_inference.py tests/test_program.py)
  train=(--configs main pretrain --dtypes bfloat16 --repeats 5)
  inference=(--frames 30 --objects 1 2 5 --dtypes float32 bfloat16 --repeats 3)
  videos=(--videos 16 --frames 30 60 --devices 1 2 4 8 --repeats 3)
  limits=(150 120 120 60)   # seconds per part: 7.5 minutes at most
fi

report="$out/report.md"
began=$(date +%s)
failed=()
{
  echo "# Accelerator check ($([ "$tiny" = 1 ] && echo 'tiny CPU mode' || echo full))"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $("$python" --version 2>&1)"
  "$python" -c "import sys; sys.path.insert(0, 'bench'); from common import machine; print('machine:', machine())" 2>&1
  echo
  "$python" -c 'import tensorflow' > /dev/null 2>&1 && echo 'tensorflow: importable (the stub did not take effect)' \
    || echo 'tensorflow: blocked for every part (a stub package that raises ImportError)'
} > "$report"

part() {   # part NAME SECONDS COMMAND…: runs it (at most SECONDS), appends its output and status to the report
  local name="$1" limit="$2" start status
  shift 2
  start=$(date +%s)
  echo "== $name: $*" >&2
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  status=$?
  {
    echo
    echo "## $name ($(( $(date +%s) - start )) s, $([ $status = 0 ] && echo ok || { [ $status = 124 ] && echo "FAILED: over ${limit} s" || echo "FAILED, exit $status"; }))"
    echo
    echo '`'"$*"'`'
    echo
    grep -v -E '^(I|W)[0-9]{4} |^WARNING: All log messages|absl::InitializeLog' "$out/$name.log" | tail -n 60
  } >> "$report"
  [ $status = 0 ] || failed+=("$name")
}

part tests "${limits[0]}" "$python" -m pytest -q -p no:cacheprovider "${tests[@]}"
part train "${limits[1]}" "$python" bench/train_step.py "${train[@]}"
part inference "${limits[2]}" "$python" bench/inference.py "${inference[@]}"
part videos "${limits[3]}" "$python" bench/multi_video.py "${videos[@]}"

{
  echo
  echo "## total: $(( $(date +%s) - began )) s; $([ ${#failed[@]} = 0 ] && echo 'every part ok' || echo "failed: ${failed[*]}")"
} >> "$report"
echo "report: $report"
[ ${#failed[@]} = 0 ]
