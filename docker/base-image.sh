#!/bin/sh
# base-image.sh [IMAGE] makes the Debian base image dt's Dockerfile starts FROM, locally,
# when the engine does not have it yet: no registry can be reached from dt's machines, so
# the image is built with debootstrap from Debian's package mirror and `docker import`ed.
#
# Environment: DOCKER (docker), SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian).
# Needs root and debootstrap (apt-get install debootstrap).
set -eu
image=${1:-dt-base:bookworm}
suite=${SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

if $docker image inspect "$image" >/dev/null 2>&1; then
	echo "base image $image: present"
	exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
	echo "base image $image is missing and debootstrap is not installed: apt-get install debootstrap" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "base image $image is missing; making it with debootstrap needs root" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/dt-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
echo "base image $image: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.log" 2>&1 || {
	tail -20 "$dir.log" >&2
	rm -f "$dir.log"
	exit 1
}
rm -f "$dir.log"

# What Debian's own container images do: daemons are never started by package scripts
# (there is no init in a container), apt keeps no caches, and security updates resolve.
printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
chmod 755 "$dir/usr/sbin/policy-rc.d"
cat >"$dir/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CLEAN
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log

tar -C "$dir" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
	$docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$image"
echo "base image $image: imported"
