#!/bin/sh
# run.sh IMAGE [CMD...] runs CMD in a container of IMAGE with the privileges dt needs
# (network namespaces, veths, its own Open vSwitch with tap devices): --privileged.
#
# Where the engine cannot grant --privileged, because the host's capability bounding set
# lacks a capability (runc: "unable to apply caps: operation not permitted"; dt's
# Firecracker VMs lack CAP_SYS_RESOURCE), it uses the nearest thing: every capability the
# host has, no seccomp filter, writable /proc/sys, and /dev/net/tun.
#
# Environment: DOCKER (docker), DOCKER_RUN_FLAGS (replaces the privilege flags),
# DOCKER_RUN_ARGS (more docker run arguments, e.g. volumes).
set -eu
docker=${DOCKER:-docker}
image=${1:?usage: run.sh IMAGE [CMD...]}
shift

# capability names by number, as docker's --cap-drop spells them
capname() {
	set -- CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP \
		LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER \
		SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE \
		SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP \
		MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF \
		CHECKPOINT_RESTORE
	shift "$cap"
	echo "$1"
}

if [ -n "${DOCKER_RUN_FLAGS:-}" ]; then
	flags=$DOCKER_RUN_FLAGS
elif out=$($docker run --rm --privileged "$image" true 2>&1); then
	flags=--privileged
elif echo "$out" | grep -q 'apply caps'; then
	# Drop what the host's bounding set lacks (read from this process: the engine is local).
	bnd=$((0x$(awk '/^CapBnd/ {print $2}' /proc/self/status)))
	flags="--cap-add ALL"
	for cap in $(seq 0 37); do # 38+ (PERFMON, BPF, ...) are unknown to older engines
		if [ $(((bnd >> cap) & 1)) = 0 ]; then
			flags="$flags --cap-drop $(capname)"
		fi
	done
	flags="$flags --security-opt seccomp=unconfined --security-opt systempaths=unconfined --device /dev/net/tun"
	echo "run.sh: this engine refuses --privileged (unable to apply caps); using $flags" >&2
else
	echo "$out" >&2
	exit 1
fi

tty=
if [ -t 0 ] && [ -t 1 ]; then
	tty=-it
fi
# shellcheck disable=SC2086 # flags are words on purpose
exec $docker run $flags ${DOCKER_RUN_ARGS:-} $tty --rm "$image" "$@"
