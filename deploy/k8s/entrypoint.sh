#!/bin/sh
# Entrypoint of the flow pods (StatefulSets in this directory). Two commands:
#
#   entrypoint.sh run flows.alerting   main container: `python -m bytewax.run flows.alerting -w W -i I -a A [-r -s -b]`
#   entrypoint.sh init-recovery        initContainer: create this pod's share of the recovery partitions, once
#
# Bytewax's own Kubernetes convention (helm chart / waxctl): the process id is the pod's ordinal
# (BYTEWAX_POD_NAME minus "BYTEWAX_STATEFULSET_NAME-"), and the addresses are the pods' names in the
# headless Service, one per line in BYTEWAX_HOSTFILE_PATH, port 9999. `bytewax.run` can derive both
# itself from those variables; we compute them here so they are checked, logged and passed explicitly.
#
# Recovery partitions live on a PVC per pod, so each pod must hold a *disjoint* share of them
# (partition k on the pod with ordinal k % RECOVERY_INIT_REPLICAS): with a full copy on every pod,
# Bytewax picks one copy per partition, and after a rescale it can pick a stale one and resume
# silently inconsistent state (measured with bytewax 0.21.1). See README.md, "Recovery and scaling".
#
# BYTEWAX_ADDRESSES (Bytewax's variable for -a, `host:port;host:port`) replaces the computed list.
# ENTRYPOINT_DRY_RUN=1 prints the command (one argument per line) instead of running it.
set -eu

die() {
	echo "entrypoint: $*" >&2
	exit 64
}

is_count() { # a non-negative integer
	case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

ordinal() {
	pod="${BYTEWAX_POD_NAME:?BYTEWAX_POD_NAME must be the pod name (fieldRef metadata.name)}"
	sts="${BYTEWAX_STATEFULSET_NAME:?BYTEWAX_STATEFULSET_NAME must be the StatefulSet name}"
	n="${pod#"$sts"-}"
	is_count "$n" || die "BYTEWAX_POD_NAME=$pod is not $sts-<ordinal>"
	echo "$n"
}

has_partitions() {
	for f in "$1"/part-*.sqlite3; do
		[ -e "$f" ] && return 0
	done
	return 1
}

run() {
	module="${1:?usage: entrypoint.sh run flows.<name>}"
	replicas="${BYTEWAX_REPLICAS:?BYTEWAX_REPLICAS must equal the StatefulSet replicas}"
	is_count "$replicas" && [ "$replicas" -ge 1 ] || die "BYTEWAX_REPLICAS=$replicas: not a count >= 1"
	workers="${BYTEWAX_WORKERS_PER_PROCESS:-1}"
	is_count "$workers" && [ "$workers" -ge 1 ] || die "BYTEWAX_WORKERS_PER_PROCESS=$workers: not a count >= 1"
	i="$(ordinal)"
	[ "$i" -lt "$replicas" ] || die "ordinal $i >= BYTEWAX_REPLICAS=$replicas: set BYTEWAX_REPLICAS to the StatefulSet's replicas"

	sts="$BYTEWAX_STATEFULSET_NAME"
	service="${BYTEWAX_SERVICE_NAME:-$sts}"
	port="${BYTEWAX_PORT:-9999}"
	# <pod>.<headless service>.<namespace>.svc resolves through the pod's DNS search path whatever
	# the cluster domain is; the Service publishes not-ready addresses, so it resolves at start.
	domain="$service${POD_NAMESPACE:+.$POD_NAMESPACE.svc}"
	hostfile="${BYTEWAX_HOSTFILE_PATH:-/tmp/bytewax/hostfile.txt}"
	mkdir -p "$(dirname "$hostfile")"
	if [ -n "${BYTEWAX_ADDRESSES:-}" ]; then
		# Bytewax's own variable for -a wins (another DNS layout, a local smoke test).
		echo "$BYTEWAX_ADDRESSES" | tr ';' '\n' >"$hostfile"
	else
		: >"$hostfile"
		k=0
		while [ "$k" -lt "$replicas" ]; do
			echo "$sts-$k.$domain:$port" >>"$hostfile"
			k=$((k + 1))
		done
	fi
	addresses="$(paste -sd ';' "$hostfile")"
	[ "$(wc -l <"$hostfile")" -eq "$replicas" ] || die "$(wc -l <"$hostfile") address(es) for BYTEWAX_REPLICAS=$replicas"

	set -- python -m bytewax.run "$module" -w "$workers" -i "$i" -a "$addresses"
	dir="${BYTEWAX_RECOVERY_DIRECTORY:-}"
	if [ -n "$dir" ]; then
		snapshot="${BYTEWAX_SNAPSHOT_INTERVAL:?recovery needs BYTEWAX_SNAPSHOT_INTERVAL (seconds, -s)}"
		backup="${BYTEWAX_RECOVERY_BACKUP_INTERVAL:?recovery needs BYTEWAX_RECOVERY_BACKUP_INTERVAL (seconds, -b)}"
		is_count "$snapshot" && [ "$snapshot" -ge 1 ] || die "BYTEWAX_SNAPSHOT_INTERVAL=$snapshot: not whole seconds >= 1"
		is_count "$backup" || die "BYTEWAX_RECOVERY_BACKUP_INTERVAL=$backup: not whole seconds"
		[ -d "$dir" ] || die "recovery directory $dir does not exist (volume not mounted?)"
		has_partitions "$dir" || [ -f "$dir/.gds-recovery" ] ||
			die "no recovery partitions in $dir and no init marker: the init-recovery initContainer did not run"
		set -- "$@" -r "$dir" -s "$snapshot" -b "$backup"
	fi

	echo "entrypoint: process $i of $replicas, $workers worker(s) each, addresses $addresses${dir:+, recovery $dir}" >&2
	if [ "${ENTRYPOINT_DRY_RUN:-}" = 1 ]; then
		printf '%s\n' "$@"
		return 0
	fi
	if [ "${BYTEWAX_KEEP_CONTAINER_ALIVE:-false}" = true ]; then
		# Debugging aid from Bytewax's image: keep the pod around after the flow ends to inspect it.
		rc=0
		"$@" || rc=$?
		echo "entrypoint: process ended (exit $rc); keeping the container alive" >&2
		while :; do sleep 3600; done
	fi
	exec "$@"
}

init_recovery() {
	dir="${BYTEWAX_RECOVERY_DIRECTORY:?BYTEWAX_RECOVERY_DIRECTORY must be the mounted recovery volume}"
	parts="${RECOVERY_PARTITIONS:?RECOVERY_PARTITIONS: how many recovery partitions the flow has, forever}"
	first="${RECOVERY_INIT_REPLICAS:?RECOVERY_INIT_REPLICAS: the replicas of the first deployment, forever}"
	is_count "$parts" && [ "$parts" -ge 1 ] || die "RECOVERY_PARTITIONS=$parts: not a count >= 1"
	is_count "$first" && [ "$first" -ge 1 ] || die "RECOVERY_INIT_REPLICAS=$first: not a count >= 1"
	[ "$first" -le "$parts" ] || die "RECOVERY_INIT_REPLICAS=$first > RECOVERY_PARTITIONS=$parts"
	i="$(ordinal)"
	marker="$dir/.gds-recovery"
	mkdir -p "$dir"

	if has_partitions "$dir"; then
		echo "entrypoint: $(ls "$dir"/part-*.sqlite3 | wc -l) recovery partition(s) in $dir: resuming" >&2
		return 0
	fi
	if [ -f "$marker" ]; then
		echo "entrypoint: no partitions in $dir (moved away when scaling down): this pod holds none" >&2
		return 0
	fi
	if [ "$i" -ge "$first" ]; then
		# Added by a scale-up: the partitions already exist on the first pods. Creating any here
		# would duplicate them.
		echo "created=never ordinal=$i reason=added-after-init" >"$marker"
		echo "entrypoint: pod $i was added after initialization: it holds no partitions" >&2
		return 0
	fi
	tmp="$dir/.init-tmp"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	if [ "${ENTRYPOINT_DRY_RUN:-}" = 1 ]; then
		k=0
		while [ "$k" -lt "$parts" ]; do
			: >"$tmp/part-$k.sqlite3"
			k=$((k + 1))
		done
	else
		python -m bytewax.recovery "$tmp" "$parts"
	fi
	k=0
	kept=""
	while [ "$k" -lt "$parts" ]; do
		if [ $((k % first)) -eq "$i" ]; then
			mv "$tmp/part-$k.sqlite3" "$dir/"
			kept="$kept $k"
		fi
		k=$((k + 1))
	done
	rm -rf "$tmp"
	echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ) partitions=$parts init_replicas=$first ordinal=$i kept=${kept# }" >"$marker"
	echo "entrypoint: initialized recovery partitions${kept} of $parts in $dir" >&2
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
run) run "$@" ;;
init-recovery) init_recovery "$@" ;;
*) die "usage: entrypoint.sh run flows.<name> | entrypoint.sh init-recovery" ;;
esac
