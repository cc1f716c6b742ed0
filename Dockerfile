# dt in a container: Debian bookworm, the Debian packages dt needs (.ci/apt-packages), and a
# dt binary built on the host. Build and run it with `make docker` (see docs/DOCKER.md):
# the base image is made locally with debootstrap, because no registry can be reached, and
# the build context is a small staging directory, not the repository.
#
# Run privileged: dt creates network namespaces, veths and its own Open vSwitch.
#   docker run --privileged --rm dt:dev dt up simple
ARG BASE=dt-base:bookworm
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive
# Packages first, binary last: editing dt rebuilds one small layer, not the apt layer.
COPY apt-packages /usr/share/dt/apt-packages
RUN apt-get update -qq \
 && grep -v '^[[:space:]]*#' /usr/share/dt/apt-packages | xargs apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*

COPY smoke.sh /usr/local/bin/dt-smoke
COPY dt /usr/local/bin/dt
WORKDIR /root
CMD ["dt", "--help"]
