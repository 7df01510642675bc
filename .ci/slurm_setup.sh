#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (Debian/Ubuntu, run as root) for tests/test_slurm.py.
# Installs slurm-wlm + munge if missing, writes /etc/slurm/slurm.conf (no accounting database: submit with
# --slurm-no-account and --slurm-status-command squeue), starts munged, slurmctld and slurmd, and waits
# until the node is idle. Stop everything with .ci/slurm_teardown.sh.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "slurm_setup.sh must run as root (it installs packages and starts system daemons)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

# munge: a key readable only by the munge user, runtime dirs, then the daemon
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.2; done
munge -n | unmunge >/dev/null

# slurm.conf: this host as controller and only compute node; the node line comes from `slurmd -C`
host=$(hostname -s)
node_line=$(slurmd -C | head -n 1)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<EOF
# Written by .ci/slurm_setup.sh: single-node test cluster, no accounting database.
ClusterName=cmhashci
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
${node_line} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# no cgroup plugins are used, but some builds read cgroup.conf anyway
[ -f /etc/slurm/cgroup.conf ] || echo "CgroupPlugin=autodetect" > /etc/slurm/cgroup.conf

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c   # -c: start clean, no state from an earlier run
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
  if [ "$state" = "idle" ]; then
    echo "slurm: node ${host} idle"
    sinfo
    exit 0
  fi
  sleep 1
done
echo "slurm: the node did not become idle within 60 s (state: '${state:-none}'); logs follow" >&2
tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
