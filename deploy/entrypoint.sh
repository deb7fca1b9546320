#!/bin/sh
# Entrypoint of the pvarchiver container (also used as is by the network-namespace rehearsal).
#
#   (no arguments) | serve [ARGS]   run the archiver on /storage, port 17665
#   --demo, --port ...              the same, with these arguments added
#   anything else                   run it (e.g. `pvarchiver pb dump FILE`, `sh`)
#
# The last step is `exec`: the archiver replaces this shell as PID 1, so the SIGTERM sent by
# `docker stop`/`podman stop`/systemd reaches it and it flushes every buffered sample.
set -eu

storage=${PVARCHIVER_STORAGE:-/storage}

# The host as the container sees it: Docker Desktop, Rancher Desktop and Podman publish a
# name for it; on a plain Linux bridge it is the default gateway. Only used when the site
# has not set EPICS_CA_ADDR_LIST (or EPICS_CA_NAME_SERVERS) itself.
host_address() {
    for name in host.docker.internal host.containers.internal host.lima.internal; do
        addr=$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }') || true
        if [ -n "$addr" ]; then
            echo "$addr"
            return 0
        fi
    done
    # /proc/net/route: the default route's gateway as little-endian hex, e.g. 010011AC
    hex=$(awk '$2 == "00000000" && $1 != "Iface" { print $3; exit }' /proc/net/route 2>/dev/null) || true
    if [ -n "$hex" ] && [ "$hex" != "00000000" ]; then
        printf '%d.%d.%d.%d\n' "0x$(echo "$hex" | cut -c7-8)" "0x$(echo "$hex" | cut -c5-6)" \
            "0x$(echo "$hex" | cut -c3-4)" "0x$(echo "$hex" | cut -c1-2)"
    fi
}

prepare_storage() {
    for d in "$storage" "$storage/sts" "$storage/mts" "$storage/lts"; do
        if ! mkdir -p "$d" 2>/dev/null || [ ! -w "$d" ]; then
            echo "pvarchiver: cannot write to $d as uid $(id -u)." >&2
            echo "  The folder mounted on $storage must belong to this user, e.g. on the host:" >&2
            echo "    sudo chown -R $(id -u):$(id -g) ./containerdata" >&2
            echo "  (rootless Podman: add :U to the volume, e.g. -v ./containerdata:/storage:U)" >&2
            exit 78 # EX_CONFIG: restarting will not help
        fi
    done
}

if [ "$#" -eq 0 ]; then
    set -- serve
fi
case "$1" in
    serve) shift ;;
    -*) ;;
    *) exec "$@" ;;
esac

prepare_storage
if [ -z "${EPICS_CA_ADDR_LIST:-}" ] && [ -z "${EPICS_CA_NAME_SERVERS:-}" ]; then
    guess=$(host_address || true)
    if [ -n "$guess" ]; then
        EPICS_CA_ADDR_LIST=$guess
        export EPICS_CA_ADDR_LIST
        echo "pvarchiver: EPICS_CA_ADDR_LIST not set; searching the host at $guess" >&2
    else
        echo "pvarchiver: EPICS_CA_ADDR_LIST not set and no host address found;" \
            "set it to the CA gateway (host:port)" >&2
    fi
fi
echo "pvarchiver: storage $storage; EPICS_CA_ADDR_LIST=${EPICS_CA_ADDR_LIST:-}" \
    "EPICS_CA_AUTO_ADDR_LIST=${EPICS_CA_AUTO_ADDR_LIST:-} EPICS_CA_SERVER_PORT=${EPICS_CA_SERVER_PORT:-5064}" \
    "EPICS_CA_MAX_SEARCH_PERIOD=${EPICS_CA_MAX_SEARCH_PERIOD:-}" >&2

exec pvarchiver serve --host "${PVARCHIVER_HOST:-0.0.0.0}" --port "${PVARCHIVER_PORT:-17665}" \
    --storage "$storage" "$@"
