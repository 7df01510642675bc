#!/usr/bin/env bash
# Stop the daemons started by .ci/slurm_setup.sh (by their pid files / exact process names).
set -uo pipefail
scancel --user="$(id -un)" >/dev/null 2>&1 || true
for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
  if [ -s "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
  fi
done
munge_pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
[ -n "$munge_pid" ] && kill "$munge_pid" 2>/dev/null
for _ in $(seq 20); do
  pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || pgrep -x munged >/dev/null || break
  sleep 0.5
done
echo "slurm: daemons stopped"
