#!/bin/sh
# Build a minimal Debian root file system with Python 3 as a tarball, for machines that
# cannot pull images from a registry (CI here): `docker import` the result and pass it to
# the Containerfile as `--build-arg BASE=<name>`. Users with a registry never need this.
#
#   deploy/ci-base-image.sh OUT.tar [SUITE] [MIRROR]
#
# Needs root and debootstrap. Writes OUT.tar atomically (OUT.tar.part first), so an
# interrupted run never leaves a truncated tarball that later runs would trust.
set -eu
out=${1:?usage: $0 OUT.tar [SUITE] [MIRROR]}
suite=${2:-bookworm}
mirror=${3:-http://deb.debian.org/debian}
work=$(mktemp -d "${TMPDIR:-/tmp}/pvarchiver-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
# python3-venv brings ensurepip's bundled pip wheel: the image build makes its venv with it,
# so no python3-pip (and its compilers' worth of recommends) is needed.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}
# what a container never uses: package caches and lists, documentation, man pages, locales
rm -rf "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/cache/apt/archives/"*.deb \
    "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/usr/share/doc/"* \
    "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/info/"*
find "$work/rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
    -exec rm -rf {} + 2>/dev/null || true
tar -C "$work/rootfs" --numeric-owner -cf "$out.part" .
mv "$out.part" "$out"
