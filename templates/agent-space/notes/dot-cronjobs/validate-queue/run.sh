#!/usr/bin/env bash
# Sample job: validate the queue files (TASKS/PROJECTS/SCHEDULES/ISSUES.yaml) every hour, so a bad hand
# edit is reported in the journal long before the task loop trips over it.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JOB_NAME="validate-queue"
source "$SCRIPT_DIR/../shared/lib.sh"
source "$SCRIPT_DIR/../shared/config.sh"

with_lock
log "Starting $JOB_NAME"
EXIT_CODE=0
OUTPUT="$(keystone-agent validate 2>&1)" || EXIT_CODE=$?
if [[ "$EXIT_CODE" -eq 0 ]]; then
  log "queue files are valid"
else
  log_error "queue files are invalid (exit $EXIT_CODE): $(printf '%s' "$OUTPUT" | tr '\n' ' ')"
fi
log "Completed $JOB_NAME"
exit "$EXIT_CODE"
