#!/usr/bin/env bash
# Paths every cronjob uses. Sourced by run.sh after lib.sh; derived from this file's location, never hard-coded.
CRONJOBS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AGENT_SPACE="$(cd "$CRONJOBS_DIR/.." && pwd)"
STATE_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/agent-cronjobs"
LOG_DIR="$STATE_DIR/logs"
LOCK_DIR="$STATE_DIR/locks"
mkdir -p "$LOG_DIR" "$LOCK_DIR"
export CRONJOBS_DIR AGENT_SPACE STATE_DIR LOG_DIR LOCK_DIR
