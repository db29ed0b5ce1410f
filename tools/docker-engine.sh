#!/usr/bin/env bash
# A Docker engine for `make image` and the image tests: the running one when there is one, otherwise one this
# checkout starts itself (Debian, root).
#
# Usage: tools/docker-engine.sh start|stop|status|client
#
#   start   If `docker version` reaches a server, use it and change nothing. Otherwise, as root on Debian:
#           install `docker.io` with apt-get when dockerd is missing, start dockerd in the background (log:
#           STATE/dockerd.log), wait until it answers and record its PID in STATE/dockerd.pid: the record says
#           this checkout started it. Without root, Debian or a working dockerd it fails with the reason.
#   stop    Stop the dockerd whose PID `start` recorded (SIGTERM, then waits); an engine this checkout did not
#           start is left alone.
#   status  Whether a server answers, its version, and whether this checkout started it. Exit 0 when one answers.
#   client  Print the docker client that builds with BuildKit: Debian's /usr/bin/docker (docker.io has BuildKit
#           built in; a newer CLI elsewhere on PATH may lack the buildx plugin it needs), else the `docker` on
#           PATH when its buildx plugin works. Exit 1 when there is none.
#
# STATE is $IAC_RUNNER_DOCKERD_DIR, by default <repo>/.tools/dockerd (git ignores .tools/): per checkout, so a
# checkout never stops an engine another one started.
#
# Environment: DOCKER_HOST is honoured when set (then nothing is ever started: that engine is someone else's);
# IAC_RUNNER_DOCKERD_WAIT, seconds to wait for a started dockerd to answer (default 60).
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
state=${IAC_RUNNER_DOCKERD_DIR:-$repo/.tools/dockerd}
pid_file=$state/dockerd.pid
log_file=$state/dockerd.log
wait_s=${IAC_RUNNER_DOCKERD_WAIT:-60}

log() { printf '[docker-engine] %s\n' "$*" >&2; }
fail() { printf '[docker-engine] FAILED: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: %s start|stop|status|client\n' "${0##*/}" >&2; exit 2; }

# The client that can build with BuildKit, or nothing.
find_client() {
    if [[ -x /usr/bin/docker ]]; then
        printf '%s\n' /usr/bin/docker
    elif command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
        command -v docker
    else
        return 1
    fi
}

# Any client will do to ask whether a server answers.
any_client() { find_client || command -v docker || true; }

server_version() {
    local cli
    cli=$(any_client)
    [[ -n $cli ]] || return 1
    "$cli" version --format '{{.Server.Version}}' 2>/dev/null
}

# Why no server answers, in the client's words (one line).
server_error() {
    local cli
    cli=$(any_client)
    [[ -n $cli ]] || { printf 'no docker client installed'; return 0; }
    "$cli" version --format '{{.Server.Version}}' 2>&1 >/dev/null | grep -v '^$' | tail -n 1 || true
}

# The PID this checkout recorded, if that process is still a dockerd.
our_pid() {
    local pid
    [[ -f $pid_file ]] || return 1
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] || return 1
    printf '%s\n' "$pid"
}

install_engine() {
    if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1; then
        fail "no Docker engine answers and this is not a Debian system (no apt-get): install and start Docker (Docker Desktop, your distribution's docker package), or set IAC_RUNNER_SKIP_IMAGE_TESTS=1 to skip the image tests."
    fi
    log "dockerd is missing: apt-get install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed (is a Debian mirror reachable? see /etc/apt/sources.list.d/)."
    # Without recommends: no apparmor, no cgroupfs-mount; BuildKit and the overlay2 driver are in dockerd itself.
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null ||
        fail "apt-get install docker.io failed (run it by hand to see why)."
}

start() {
    local version pid i
    if version=$(server_version); then
        log "using the running Docker engine ($version)"
        return 0
    fi
    [[ -z ${DOCKER_HOST:-} ]] ||
        fail "DOCKER_HOST=$DOCKER_HOST does not answer, and that engine is not one to start from here: start it, or unset DOCKER_HOST."
    [[ $(id -u) == 0 ]] ||
        fail "no Docker engine answers ($(server_error)) and starting one needs root (this is uid $(id -u)): start Docker yourself (Docker Desktop, sudo systemctl start docker) or get access to its socket, or set IAC_RUNNER_SKIP_IMAGE_TESTS=1 to skip the image tests."
    command -v dockerd >/dev/null 2>&1 || install_engine
    mkdir -p -- "$state"
    if pid=$(our_pid); then
        log "the dockerd this checkout started (PID $pid) does not answer yet: waiting for it"
    elif [[ -S /var/run/docker.sock ]] && pid=$(cat /var/run/docker.pid 2>/dev/null) && [[ -d /proc/$pid ]]; then
        fail "a dockerd (PID $pid, not started by this checkout) is running but does not answer: see its log, or stop it."
    else
        log "starting dockerd (log: $log_file)"
        # setsid: the engine outlives this script and the make/pytest run that called it, until `stop`.
        setsid dockerd >>"$log_file" 2>&1 </dev/null &
        pid=$!
        printf '%s\n' "$pid" >"$pid_file"
    fi
    for ((i = 0; i < wait_s * 2; i++)); do
        if version=$(server_version); then
            log "dockerd $version answers (PID $pid, started by this checkout; stop it with: $0 stop)"
            return 0
        fi
        if [[ ! -d /proc/$pid ]]; then
            rm -f -- "$pid_file"
            tail -n 20 -- "$log_file" | sed 's/^/    | /' >&2
            fail "dockerd exited at start (last lines of $log_file above)."
        fi
        sleep 0.5
    done
    fail "dockerd (PID $pid) did not answer within ${wait_s}s: see $log_file (it is left running; $0 stop ends it)."
}

stop() {
    local pid i
    if ! pid=$(our_pid); then
        rm -f -- "$pid_file"
        log "no dockerd started by this checkout is running: nothing to stop"
        return 0
    fi
    log "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    # dockerd stops its containers first (10 s each by default) before it exits.
    for ((i = 0; i < 120; i++)); do
        [[ -d /proc/$pid ]] || { rm -f -- "$pid_file"; log "dockerd stopped"; return 0; }
        sleep 0.5
    done
    fail "dockerd (PID $pid) is still running 60 s after SIGTERM: see $log_file."
}

status() {
    local version pid
    if pid=$(our_pid); then
        log "this checkout started dockerd (PID $pid, log: $log_file)"
    fi
    if version=$(server_version); then
        log "a Docker engine answers: $version"
    else
        log "no Docker engine answers"
        return 1
    fi
}

[[ $# -eq 1 ]] || usage
case $1 in
start) start ;;
stop) stop ;;
status) status ;;
client) find_client || fail "no docker client that builds with BuildKit: install docker.io (Debian) or Docker's buildx plugin." ;;
*) usage ;;
esac
