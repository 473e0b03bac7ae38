#!/usr/bin/env bash
# Shared functions for cronjobs: logging (journal + per-job log file), errors, one-at-a-time locking.
# Usage in run.sh:  source "$SCRIPT_DIR/../shared/lib.sh"; source "$SCRIPT_DIR/../shared/config.sh"

JOB_NAME="${JOB_NAME:-$(basename "$(cd "$(dirname "${BASH_SOURCE[1]:-$0}")" && pwd)")}"

_log_line() {
  local level="$1"; shift
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) job=$JOB_NAME level=$level msg=\"$*\""
  printf '%s\n' "$line" >&2
  if [ -n "${LOG_DIR:-}" ]; then
    printf '%s\n' "$line" >> "$LOG_DIR/$JOB_NAME.log"
  fi
}

log() { _log_line info "$@"; }
log_error() { _log_line error "$@"; }
die() { log_error "$@"; exit 1; }

# with_lock: make sure only one instance of this job runs; a second one logs and exits 0.
with_lock() {
  local lock="$LOCK_DIR/$JOB_NAME.lock"
  exec {JOB_LOCK_FD}>"$lock"
  if ! flock -n "$JOB_LOCK_FD"; then
    log "already running, skipping"
    exit 0
  fi
}

trap 'log_error "failed at line $LINENO (exit $?)"' ERR
