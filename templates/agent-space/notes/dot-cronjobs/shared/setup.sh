#!/usr/bin/env bash
# Install every job of .cronjobs/ as systemd user units: <job>.service and <job>.timer are symlinks to the
# job's service.unit and timer.unit in ~/.config/systemd/user/; then reload and enable the timers.
# SETUP_NO_SYSTEMCTL=1 only links the units (for checking them, or where no user manager runs).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SYSTEMD_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
mkdir -p "$SYSTEMD_DIR"
timers=()
for job_dir in "$SCRIPT_DIR"/*/; do
  job_dir="${job_dir%/}"
  job_name="$(basename "$job_dir")"
  [[ "$job_name" == "shared" ]] && continue
  [[ -f "$job_dir/service.unit" && -f "$job_dir/timer.unit" ]] || continue
  ln -sf "$job_dir/service.unit" "$SYSTEMD_DIR/${job_name}.service"
  ln -sf "$job_dir/timer.unit" "$SYSTEMD_DIR/${job_name}.timer"
  timers+=("${job_name}.timer")
  echo "installed $job_name"
done
if [[ "${SETUP_NO_SYSTEMCTL:-}" != "1" ]]; then
  systemctl --user daemon-reload
  if [[ ${#timers[@]} -gt 0 ]]; then
    systemctl --user enable --now "${timers[@]}"
  fi
fi
