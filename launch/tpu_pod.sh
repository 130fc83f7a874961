#!/usr/bin/env bash
# Trains on a Cloud TPU VM pod slice: stops stale runs on every worker, copies this checkout to every
# worker, sets up its environment there, and starts the same command on all workers at once. The
# processes find each other through jax.distributed (--distributed); the workdir must be shared by all
# workers (a gs:// bucket).
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<'USAGE'
usage: launch/tpu_pod.sh --tpu NAME --zone ZONE --config NAME --workdir gs://BUCKET/RUN
                         [--project P] [--skip-setup] [--preflight] [--dry-run] [-- FLAG…]

  --tpu NAME       TPU VM name (gcloud compute tpus tpu-vm list)
  --zone ZONE      its zone, e.g. us-central2-b
  --project P      GCP project (default: gcloud's configured one)
  --config NAME    configs/NAME.py (main, pretrain, ablation:t5_lfm, …)
  --workdir DIR    run folder shared by every worker (gs://…); the run resumes from it
  --skip-setup     code is copied, the environment is not reinstalled
  --preflight      before starting, compile the config's train step for this slice on worker 0
                   (python -m gsfm_jax.aot, slice type from the VM's metadata) and stop if it does not
                   fit the chips' HBM or does not compile
  --dry-run        print the commands instead of running them
  -- FLAG…         passed to gsfm_jax.train, e.g. -- --config.data.tfds_dir=gs://bucket/tfds

Logs: ~/gsfm_jax/train.log on each worker. Data must be readable from every worker (a bucket, TFDS form).
USAGE
}

tpu="" zone="" project="" config="" workdir="" setup=1 preflight=0 extra=()
while (($#)); do
  case "$1" in
    --tpu) tpu="${2:?--tpu needs a value}"; shift 2 ;;
    --zone) zone="${2:?--zone needs a value}"; shift 2 ;;
    --project) project="${2:?--project needs a value}"; shift 2 ;;
    --config) config="${2:?--config needs a value}"; shift 2 ;;
    --workdir) workdir="${2:?--workdir needs a value}"; shift 2 ;;
    --skip-setup) setup=0; shift ;;
    --preflight) preflight=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ -n "$tpu" && -n "$zone" && -n "$config" && -n "$workdir" ]] || {
  usage >&2; die "--tpu, --zone, --config and --workdir are required"; }
check_config "$config"
[[ "$workdir" == gs://* ]] || die "--workdir must be a gs:// path that every worker can write, got '$workdir'"
[[ "${DRY_RUN:-0}" == 1 ]] || command -v gcloud >/dev/null || die "gcloud not found (install the Google Cloud SDK)"

repo="$(cd "$(dirname "$0")/.." && pwd)"
gc=(gcloud compute tpus tpu-vm)
where=("--zone=$zone" ${project:+"--project=$project"})
on_all() { run "${gc[@]}" ssh "$tpu" "${where[@]}" --worker=all --command "$1"; }

# 1. stale processes (an earlier launch) hold the TPU: stop them on every worker
on_all "pkill -f gsfm_jax.train || true; sleep 2"
# 2. the code: this checkout, without environments, data or outputs
archive="$(mktemp -t gsfm_jax.XXXXXX.tar.gz)"
trap 'rm -f "$archive"' EXIT
run tar -C "$repo" --exclude=.venv --exclude=.git --exclude=data --exclude=runs --exclude=out -czf "$archive" .
run "${gc[@]}" scp "$archive" "$tpu:~/gsfm_jax.tar.gz" "${where[@]}" --worker=all
on_all "rm -rf ~/gsfm_jax && mkdir ~/gsfm_jax && tar -C ~/gsfm_jax -xzf ~/gsfm_jax.tar.gz"
# 3. the environment: the pinned CPU set, then the tpu extra (jax's TPU build, libtpu, of the same jax version)
if ((setup)); then
  on_all "cd ~/gsfm_jax && python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt \
    && .venv/bin/pip install -q -e '.[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
fi
# 4. the preflight: the train step compiled for this slice type (compile-only: the TPU is not opened), with the
#    run's --config.* overrides; a step that does not fit stops here, before any worker starts
if ((preflight)); then
  overrides=()
  for flag in "${extra[@]}"; do [[ "$flag" == --config.* ]] && overrides+=("$flag"); done
  # shellcheck disable=SC2016  # expanded on the worker, not here
  slice='$(curl -s -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/accelerator-type)'
  run "${gc[@]}" ssh "$tpu" "${where[@]}" --worker=0 --command "cd ~/gsfm_jax && .venv/bin/python -m gsfm_jax.aot \
--config=$(printf '%q' "$config") --topology=$slice $(printf '%q ' "${overrides[@]}")" \
    || die "preflight: the train step of --config $config does not fit or does not compile on $tpu (the table or error above); lower --config.global_batch or raise --config.grad_accum"
fi
# 5. the same command on every worker, at once
flags=("--config=$config" "--workdir=$workdir" --distributed "${extra[@]}")
on_all "cd ~/gsfm_jax && nohup .venv/bin/python -m gsfm_jax.train $(printf '%q ' "${flags[@]}")> train.log 2>&1 &"
echo "started on every worker of $tpu; follow with: ${gc[*]} ssh $tpu ${where[*]} --worker=0 --command 'tail -f ~/gsfm_jax/train.log'"
