#!/usr/bin/env bash
# Submits a multi-node, multi-GPU training job to SLURM. Every task runs the same command and the tasks
# join through jax.distributed, which reads SLURM's variables (coordinator = first node).
#
#   --mode node  one process per node driving all its GPUs (fewer processes; the usual choice)
#   --mode gpu   one process per GPU (task i of a node uses GPU i; for sites that require it)
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<'USAGE'
usage: launch/slurm.sh --nodes N --gpus-per-node G --config NAME --workdir DIR
                       [--mode node|gpu] [--partition P] [--account A] [--time HH:MM:SS]
                       [--python PY] [--dry-run] [-- FLAG…]

  --nodes N            number of nodes
  --gpus-per-node G    GPUs on each node
  --config NAME        configs/NAME.py (main, pretrain, ablation:t5_lfm, …)
  --workdir DIR        run folder on a filesystem every node sees; the run resumes from it
  --mode node|gpu      one process per node (default) or one per GPU
  --partition/--account/--time   passed to sbatch
  --python PY          interpreter of the shared environment (default: $PWD/.venv/bin/python)
  --dry-run            print the batch script instead of submitting it
  -- FLAG…             passed to gsfm_jax.train, e.g. -- --config.global_batch=128

SLURM sends SIGTERM before a preemption or the time limit (--signal below): the run saves a checkpoint
and exits; resubmitting the same command resumes it.
USAGE
}

nodes="" gpus="" config="" workdir="" mode="node" partition="" account="" time_limit="24:00:00"
python="$PWD/.venv/bin/python" extra=()
while (($#)); do
  case "$1" in
    --nodes) nodes="${2:?--nodes needs a value}"; shift 2 ;;
    --gpus-per-node) gpus="${2:?--gpus-per-node needs a value}"; shift 2 ;;
    --config) config="${2:?--config needs a value}"; shift 2 ;;
    --workdir) workdir="${2:?--workdir needs a value}"; shift 2 ;;
    --mode) mode="${2:?--mode needs a value}"; shift 2 ;;
    --partition) partition="${2:?--partition needs a value}"; shift 2 ;;
    --account) account="${2:?--account needs a value}"; shift 2 ;;
    --time) time_limit="${2:?--time needs a value}"; shift 2 ;;
    --python) python="${2:?--python needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ -n "$nodes" && -n "$gpus" && -n "$config" && -n "$workdir" ]] || {
  usage >&2; die "--nodes, --gpus-per-node, --config and --workdir are required"; }
check_positive_int --nodes "$nodes"
check_positive_int --gpus-per-node "$gpus"
check_config "$config"
[[ "$mode" == node || "$mode" == gpu ]] || die "--mode must be node or gpu, got '$mode'"
[[ "$time_limit" =~ ^([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}$ ]] || die "--time must look like HH:MM:SS, got '$time_limit'"
[[ "${DRY_RUN:-0}" == 1 ]] || command -v sbatch >/dev/null || die "sbatch not found: run this on the cluster's login node"

if [[ "$mode" == node ]]; then
  tasks=1
  # SLURM makes JAX default to one GPU per process; a per-node process takes all of them
  devices="export JAX_LOCAL_DEVICE_IDS=$(seq -s, 0 $((gpus - 1)))"
else
  tasks="$gpus"
  devices="# task i of a node uses GPU i (SLURM_LOCALID); all GPUs stay visible to every task"
fi
flags=("--config=$config" "--workdir=$workdir" --distributed "${extra[@]}")
repo="$(cd "$(dirname "$0")/.." && pwd)"

script="#!/usr/bin/env bash
#SBATCH --job-name=gsfm_jax
#SBATCH --nodes=$nodes
#SBATCH --ntasks-per-node=$tasks
#SBATCH --gpus-per-node=$gpus
#SBATCH --time=$time_limit
#SBATCH --signal=TERM@300
#SBATCH --output=$workdir/slurm-%j.out
${partition:+#SBATCH --partition=$partition}
${account:+#SBATCH --account=$account}
set -euo pipefail
cd $(printf '%q' "$repo")
$devices
srun --kill-on-bad-exit=1 $(printf '%q ' "$python" -m gsfm_jax.train "${flags[@]}")
"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%s' "$script"
else
  mkdir -p "$workdir"
  printf '%s' "$script" | sbatch
fi
