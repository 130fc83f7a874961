#!/usr/bin/env bash
# Trains on one machine with several GPUs: one process drives every visible GPU (JAX's usual way; the
# batch is split over them by the device mesh). Stops a stale run of the same workdir first.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<'USAGE'
usage: launch/multi_gpu.sh --config NAME --workdir DIR [--gpus 0,1,2,3] [--python PY] [--dry-run] [-- FLAG…]

  --config NAME    configs/NAME.py (main, pretrain, demo, ablation:t5_lfm, …) or a config file path
  --workdir DIR    run folder; the run resumes from its newest checkpoint
  --gpus LIST      GPU indices to use (CUDA_VISIBLE_DEVICES; default: all)
  --python PY      interpreter of the environment set up with `make setup` + jax[cuda] (default: .venv/bin/python)
  --dry-run        print the commands instead of running them
  -- FLAG…         passed to gsfm_jax.train, e.g. -- --config.global_batch=64

Example: launch/multi_gpu.sh --config main --workdir runs/main --gpus 0,1,2,3,4,5,6,7
USAGE
}

config="" workdir="" gpus="" python=".venv/bin/python" extra=()
while (($#)); do
  case "$1" in
    --config) config="${2:?--config needs a value}"; shift 2 ;;
    --workdir) workdir="${2:?--workdir needs a value}"; shift 2 ;;
    --gpus) gpus="${2:?--gpus needs a value}"; shift 2 ;;
    --python) python="${2:?--python needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ -n "$config" && -n "$workdir" ]] || { usage >&2; die "--config and --workdir are required"; }
check_config "$config"
[[ -z "$gpus" || "$gpus" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--gpus must look like 0,1,2,3, got '$gpus'"
[[ "${DRY_RUN:-0}" == 1 || -x "$python" ]] || die "$python not found: run 'make setup' and install jax[cuda] into it"
if [[ "${DRY_RUN:-0}" != 1 ]] && command -v nvidia-smi >/dev/null && ! nvidia-smi -L >/dev/null; then
  die "nvidia-smi cannot see a GPU"
fi

cd "$(dirname "$0")/.."
run pkill -f -- "gsfm_jax.train .*--workdir=$workdir( |$)" || true
run env ${gpus:+CUDA_VISIBLE_DEVICES=$gpus} "$python" -m gsfm_jax.train "--config=$config" "--workdir=$workdir" "${extra[@]}"
