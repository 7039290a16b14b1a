#!/usr/bin/env bash
# What `deno task test` needs beyond Deno, installed when missing: Debian
# packages when root; otherwise the one missing thing, named in one line.
set -euo pipefail

# command to look for, and the Debian package that brings it
needs=(
  "python3 python3"            # the original scripts' ports, a crowd of idle connections
  "openssl openssl"            # test certificates
  "strace strace"              # --fsync's syncs, counted
  "nc netcat-openbsd"          # the benchmark's tar | nc, which a CLI test runs
  "/usr/bin/time time"         # the benchmark's CPU and memory figures
  "mkfs.exfat exfatprogs"      # an exFAT image: a file system without hard links
  "mount.exfat-fuse exfat-fuse"
  "losetup mount"
  "script bsdutils"            # a pseudo-terminal for the permission prompt
  "rsync rsync"                # the benchmark's rsync daemon, which a CLI test runs
  "ip iproute2"                # the benchmark's shaped link: network namespaces, veth
  "tc iproute2"
  "haproxy haproxy"            # a real balancer sending PROXY headers
)

missing=()
for need in "${needs[@]}"; do
  read -r command package _ <<<"$need"
  command -v "$command" >/dev/null 2>&1 && continue
  [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$EUID" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup: the tests need ${missing[*]}: run as root, or apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
