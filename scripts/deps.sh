#!/usr/bin/env bash
# Installs what dt needs on Debian/Ubuntu (run as root): the Debian packages listed in
# .ci/apt-packages, a Go toolchain if none is found, and the Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then
  echo "deps: run as root (apt-get installs packages)" >&2
  exit 1
fi
apt-get update -qq
grep -v '^\s*#' .ci/apt-packages | grep -v '^\s*$' | xargs apt-get install -y -qq --no-install-recommends >/dev/null

GO=$(command -v go || true)
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  apt-get install -y -qq --no-install-recommends golang-go ca-certificates git >/dev/null
  GO=$(command -v go)
fi
# Go 1.21+ fetches the toolchain go.mod asks for through the module proxy by itself.
minor=$("$GO" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [ "${minor:-0}" -lt 21 ]; then
  echo "deps: $("$GO" version) is too old: dt needs Go >= 1.21, which then fetches the" >&2
  echo "      toolchain named in go.mod through the module proxy. On Debian bookworm:" >&2
  echo "      apt-get install -t bookworm-backports golang-go   (or install Go from go.dev)" >&2
  exit 1
fi
GOTOOLCHAIN=auto "$GO" mod download
echo "deps: installed ($("$GO" version))"
