#!/bin/bash
# Stops the Orthanc that orthanc_start.sh DIR started, by its PID file only (TERM, then
# KILL after 15 s). Leaves DIR in place; the caller removes it.
#
#   orthanc_stop.sh DIR
set -uo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
PIDFILE=$1/orthanc.pid
[ -f "$PIDFILE" ] || exit 0
PID=$(cat "$PIDFILE")
# Only a process that is still this Orthanc (its command line names DIR's configuration).
if kill -0 "$PID" 2>/dev/null && tr '\0' ' ' < "/proc/$PID/cmdline" 2>/dev/null | grep -q "orthanc.json"; then
  kill -TERM "$PID"
  for _ in $(seq 1 75); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$PID" 2>/dev/null; then
    echo "Orthanc (pid $PID) did not stop within 15 s; killing it" >&2
    kill -KILL "$PID"
  fi
fi
rm -f "$PIDFILE"
exit 0
