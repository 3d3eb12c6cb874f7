#!/usr/bin/env bash
# `make test-cluster`: a one-node SLURM cluster on this machine (../shared/tools/slurm-local), first with
# slurmdbd accounting and a (fake) GPU, then without accounting storage, and the cluster tests against
# each; the daemons are stopped at the end and /etc/slurm/slurm.conf is left as it was found (none, when there
# was none: with a slurm.conf naming a stopped controller, every Snakemake start waits ~9 s while the SLURM
# executor plugin asks `scontrol show config`). Skips (exit 0, saying why) only where no cluster can be set
# up here: the set-up script is missing, this is not root, or apt-get cannot install the SLURM packages.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP=${SLURM_SETUP:-../shared/tools/slurm-local/setup-local-slurm.sh}
LOG=${TMPDIR:-/tmp}/aenet-core-slurm-setup.log
skip() { echo "SKIPPED the cluster tests: $*"; exit 0; }

[ -f "$SETUP" ] || skip "no cluster set-up script at $SETUP"
[ "$(id -u)" = 0 ] || skip "setting up a local SLURM cluster needs root"
CONF=/etc/slurm/slurm.conf
SAVED=$(mktemp)
if [ -f "$CONF" ]; then cp -p "$CONF" "$SAVED"; else rm -f "$SAVED"; fi
restore() {
    bash "$SETUP" stop >/dev/null 2>&1 || true
    if [ -f "$SAVED" ]; then mv -f "$SAVED" "$CONF"; else rm -f "$CONF"; fi
}
trap restore EXIT
# The GPU test needs the fake GPU: it runs in the first round and is left out of the second.
for variant in "ACCOUNTING=slurmdbd FAKE_GPU=1" "ACCOUNTING=none FAKE_GPU=0"; do
    echo "== local SLURM cluster: $variant"
    if ! env $variant bash "$SETUP" >"$LOG" 2>&1; then
        if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v munged >/dev/null
        then
            tail -5 "$LOG"
            skip "apt-get could not install the SLURM packages (log: $LOG)"
        fi
        tail -20 "$LOG"
        echo "the local SLURM cluster did not start (log: $LOG)"
        exit 1
    fi
    if [[ $variant == *FAKE_GPU=1* ]]; then round=gpu; only=(); else round=cpu; only=(-k "not cuda"); fi
    AENET_CORE_TEST_CLUSTER=$round pytest -q -s -m cluster "${only[@]}" tests/test_cluster.py
done
