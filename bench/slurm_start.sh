#!/bin/bash
# Starts a one-node Slurm cluster on 127.0.0.1 for `voxhub bench jobs --slurm`, with all of
# its state in DIR: a private munged (own key and socket), slurmctld and slurmd (node
# `bench1`, NodeAddr=127.0.0.1). No accounting database, no cgroups
# (proctrack/linuxproc, task/none). Stop it with slurm_stop.sh DIR.
#
#   slurm_start.sh DIR CPUS CTLD_PORT SLURMD_PORT
#
# CPUS may exceed the real core count (the node is then overcommitted, like the
# 64-slot node of the peer measurements). The scheduler is tuned for many small jobs:
# batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000 (as shipped,
# batch_sched_delay=3 lets Slurm start batch jobs only once every 3 s). Set
# SLURM_PROFILE=default to measure Slurm as shipped instead.
#
# Exit codes: 0 up and idle; 3 Slurm or munge is not installed; 1 it did not come up.
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 DIR CPUS CTLD_PORT SLURMD_PORT" >&2
  exit 2
fi
DIR=$1 CPUS=$2 CTLD_PORT=$3 SLURMD_PORT=$4
missing=""
for program in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol; do
  command -v "$program" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$program" >/dev/null 2>&1 || missing="$missing $program"
done
if [ -n "$missing" ]; then
  echo "Slurm is not installed (missing:$missing)." >&2
  echo "Install it with: apt-get install -y slurm-wlm munge   (Debian/Ubuntu), then run the benchmark again." >&2
  exit 3
fi
export PATH=$PATH:/usr/sbin
mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log"
chmod 700 "$DIR/munge"
[ -f "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key" --bits=1024
chmod 600 "$DIR/munge/munge.key"
HOST=$(hostname -s)
SCHED="SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000"
[ "${SLURM_PROFILE:-htc}" = "default" ] && SCHED=""
cat > "$DIR/slurm.conf" <<CONF
ClusterName=voxhubbench
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
$SCHED
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MaxJobCount=50000
MinJobAge=300
SlurmdParameters=config_overrides
NodeName=bench1 NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS RealMemory=16000 State=UNKNOWN
PartitionName=bench Nodes=bench1 Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$DIR/slurm.conf
munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
       --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
       --seed-file="$DIR/munge/munge.seed" --num-threads=10
slurmctld -c -f "$DIR/slurm.conf"   # -c: no job state from an earlier start
slurmd -f "$DIR/slurm.conf" -N bench1
for _ in $(seq 1 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE '^idle'; then
    echo "Slurm $(sinfo -V | awk '{print $2}') up: $(sinfo -h -o '%P %D nodes, %c CPUs, %t')" >&2
    exit 0
  fi
  sleep 0.5
done
echo "Slurm did not become idle within 30 s:" >&2
sinfo >&2 || true
tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
exit 1
