#!/usr/bin/env bash
# A Debian bookworm base image with Python 3.11 (what requirements.lock was made on), venv, git and
# CA certificates, built from Debian's packages where no image registry is reachable:
#   sudo bash docker/base-image.sh                      # makes w2vpipe-base:bookworm (about a minute)
#   docker build --build-arg BASE=w2vpipe-base:bookworm -t w2vpipe .
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker engine.
# DEBIAN_MIRROR (and DEBIAN_SECURITY_MIRROR) pick the mirror; the first argument names the image.
set -euo pipefail
name="${1:-w2vpipe-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}"
docker="${DOCKER:-docker}"

[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root: run as root (sudo bash $0)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "error: debootstrap missing: apt-get install debootstrap" >&2; exit 2; }

root="$(mktemp -d /var/tmp/w2vpipe-base.XXXXXX)"
chmod 755 "$root"  # it becomes the image's /
cleanup() { umount "$root/proc" 2>/dev/null || true; rm -rf "$root" "$root.log"; }
fail() { tail -20 "$root.log" >&2; echo "error: $1 (the log's end above)" >&2; exit 1; }
trap cleanup EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,git \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || fail "debootstrap failed"

# The point release's security fixes, then no apt lists or .debs in the image.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
mount -t proc proc "$root/proc"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean' >"$root.log" 2>&1 || fail "apt-get upgrade failed"
umount "$root/proc"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*

tar --numeric-owner -C "$root" -c . | "$docker" import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase bookworm + python3 python3-venv ca-certificates git" - "$name" >/dev/null
echo "$name: $("$docker" run --rm "$name" python3 --version), $("$docker" image inspect -f '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}')"
