#!/bin/bash
# Stops slurmd, slurmctld and the private munged that slurm_start.sh DIR started, by the
# PIDs in their PID files only, waiting up to 10 s for each. Safe to run more than once.
#
#   slurm_stop.sh DIR
set -uo pipefail
DIR=${1:?usage: slurm_stop.sh DIR}
for daemon in slurmd slurmctld munged; do
  file=$DIR/$daemon.pid
  [ -f "$file" ] || continue
  pid=$(cat "$file")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$daemon" "/proc/$pid/comm" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$file"
done
