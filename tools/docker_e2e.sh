#!/usr/bin/env bash
# End-to-end test through containers (`deno task e2e:docker`): runs the
# compose project on its internal network and checks that every sample image
# arrives byte-identical, the UDP server printed every line sent, and every
# container stopped with exit code 0. No registry is reachable here, so the
# base image is built from the Deno binary installed for the tests.
# Installs docker.io and docker-compose with apt-get when missing and starts
# dockerd when no engine answers (both need root), stopping what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1-}" in
"") ;;
-h | --help)
  sed -n '2,8s/^# \{0,1\}//p' "$0"
  exit 0
  ;;
*)
  echo "docker_e2e.sh: Unknown argument '$1': it takes none" >&2
  exit 2
  ;;
esac

project=socket-toolkit-e2e
passed=0
fail() {
  echo "docker e2e: FAILED: $*" >&2
  echo "docker-e2e: $passed passed, 1 failed"
  exit 1
}
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok - $what"
  else
    fail "$what"
  fi
}

if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "docker.io and docker-compose are missing, and installing them needs root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null
fi

work=$(mktemp -d)
dockerd_pid=""
cleanup() {
  docker-compose -p "$project" down -v --remove-orphans >/dev/null 2>&1 || true
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "no Docker engine answers, and starting dockerd needs root"
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || fail "dockerd exited: $(tail -n 5 "$work/dockerd.log")"
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || fail "dockerd did not answer within 30 s: $(tail -n 5 "$work/dockerd.log")"
fi

# A minimal base image: the Deno binary, the libraries it links, a /tmp, the
# official image's user 1993 and its DENO_DIR.
deno_bin=$(readlink -f "$(command -v deno)")
deno_version=$(deno --version | head -n 1 | cut -d ' ' -f 2)
rootfs="$work/rootfs"
mkdir -p "$rootfs/usr/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/deno-dir"
cp "$deno_bin" "$rootfs/usr/bin/deno"
for lib in $(ldd "$deno_bin" | grep -o '/[^ ]*'); do cp --parents -L "$lib" "$rootfs"; done
chmod 1777 "$rootfs/tmp"
chown 1993:1993 "$rootfs/deno-dir"
echo 'deno:x:1993:1993::/deno-dir:/usr/bin/deno' >"$rootfs/etc/passwd"
echo 'deno:x:1993:' >"$rootfs/etc/group"
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
export DENO_IMAGE="socket-toolkit/deno-base:$deno_version"
tar -C "$rootfs" -c . | docker import - "$DENO_IMAGE" >/dev/null
check "built the base image $DENO_IMAGE from $deno_bin" \
  docker run --rm "$DENO_IMAGE" deno --version

docker-compose -p "$project" down -v --remove-orphans >/dev/null 2>&1 || true
docker-compose -p "$project" up --build -d 2>&1 | tail -n 4
id_of() { docker-compose -p "$project" ps -q "$1"; }

check "the network cannot reach outside" \
  test "$(docker network inspect -f '{{.Internal}}' "${project}_demo")" = true

codes=$(timeout 120 docker wait "$(id_of tcp-client)" "$(id_of udp-client)") ||
  fail "the clients did not finish within 120 s: $(docker-compose -p "$project" logs --no-color | tail -n 20)"
check "both clients exited 0" test "$(echo $codes)" = "0 0"

docker cp "$(id_of tcp-server):/data" "$work/received"
same_files() {
  local sample
  for sample in samples/*; do
    cmp -s "$sample" "$work/received/$(basename "$sample")" || {
      echo "differs or missing: $sample" >&2
      return 1
    }
  done
  test "$(ls "$work/received" | wc -l)" = "$(ls samples | wc -l)"
}
check "every sample image arrived byte-identical in the server's volume" same_files

docker-compose -p "$project" stop -t 20 >/dev/null 2>&1
logs=$(docker-compose -p "$project" logs --no-color)
printed_every_line() {
  local line
  for line in "hello from the UDP client" "你好，世界" "the last line"; do
    grep -qF "udp-server_1  | $line" <<<"$logs" || { echo "not printed: $line" >&2; return 1; }
  done
}
check "the UDP server printed every line sent" printed_every_line
check "the TCP server stopped on SIGTERM with a summary" \
  grep -qE "tcp-server_1 +\| stopped: $(ls samples | wc -l) files .* 0 errors" <<<"$logs"

all_exited_0() {
  local id
  for id in $(docker-compose -p "$project" ps -q); do
    test "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")" = "exited 0" || {
      docker inspect -f '{{.Name}}: {{.State.Status}} {{.State.ExitCode}}' "$id" >&2
      return 1
    }
  done
}
check "all four containers stopped with exit code 0" all_exited_0

docker-compose -p "$project" down -v >/dev/null 2>&1
check "nothing is left running" \
  test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")"

echo "docker-e2e: $passed passed, 0 failed"
