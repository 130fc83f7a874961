# Shared helpers of the launch scripts (sourced, not run).
# shellcheck shell=bash

die() { echo "error: $*" >&2; exit 2; }

# run CMD…: runs it, or prints it (shell-quoted) when DRY_RUN=1
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

# check_config NAME[:ARG]: the config must be configs/NAME.py of this checkout, or an existing .py path
check_config() {
  local name="${1%%:*}"
  local repo; repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [[ "$name" == */* || "$name" == *.py ]]; then
    [[ -f "$name" ]] || die "--config $1: no such file"
  else
    [[ -f "$repo/configs/$name.py" ]] || die "--config $1: no configs/$name.py (see configs/)"
  fi
}

check_positive_int() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }
