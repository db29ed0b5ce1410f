#!/usr/bin/env bash
# The image's unprivileged user: its passwd/group/shadow entries and a writable home.
#
# Usage: image/create-user.sh ROOT UID NAME HOME
#   (the Dockerfile: / 1000 runner /home/runner)
#   ROOT  the system's root folder: / in the image; elsewhere a fresh folder with etc/passwd and
#         etc/group (etc/shadow and etc/gshadow are updated when present)
#   UID   numeric user id, also the id of the user's own group (not 0)
#   HOME  the home folder (absolute, inside ROOT), created and owned by UID:UID, mode 0755
#
# Writes the entries itself rather than calling useradd, so the same code runs on any system
# and in a fresh folder. Idempotent: an existing identical user is kept. Setting the home's owner
# needs root; without root (only possible when ROOT is not /) the owner is left as is.
set -euo pipefail

log() { printf '[image-user] %s\n' "$*"; }
fail() { printf '[image-user] FAILED: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 4 ]] || { printf 'usage: %s ROOT UID NAME HOME\n' "${0##*/}" >&2; exit 2; }
root=${1%/} uid=$2 name=$3 home=$4
shell=/usr/sbin/nologin

[[ $uid =~ ^[1-9][0-9]*$ ]] || fail "UID '$uid' must be a number other than 0."
[[ $name =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || fail "'$name' is not a valid user name."
[[ $home == /* && $home != *:* ]] || fail "HOME '$home' must be an absolute path without ':'."
for f in passwd group; do
    [[ -f $root/etc/$f ]] || fail "$root/etc/$f is missing."
done

# entry FILE VALUE COLUMN: the first line whose COLUMN (1 name, 3 id) equals VALUE
entry() { awk -F: -v v="$2" -v c="$3" '$c == v { print; exit }' "$1"; }

# ensure FILE LINE: add LINE (name:x:id:...) unless exactly that entry is there; a clash is an error
ensure() {
    local file=$1 line=$2 by_name by_id
    by_name=$(entry "$file" "$name" 1)
    by_id=$(entry "$file" "$uid" 3)
    if [[ -z $by_name && -z $by_id ]]; then
        printf '%s\n' "$line" >>"$file"
    elif [[ $by_name != "$line" || $by_id != "$line" ]]; then
        fail "${file#"$root"/} already has ${by_name:-$by_id} (wanted $line)."
    fi
}
ensure "$root/etc/passwd" "$name:x:$uid:$uid::$home:$shell"
ensure "$root/etc/group" "$name:x:$uid:"
if [[ -f $root/etc/shadow ]] && [[ -z $(entry "$root/etc/shadow" "$name" 1) ]]; then
    printf '%s:!::0:99999:7:::\n' "$name" >>"$root/etc/shadow"  # no date: a reproducible layer
fi
if [[ -f $root/etc/gshadow ]] && [[ -z $(entry "$root/etc/gshadow" "$name" 1) ]]; then
    printf '%s:!::\n' "$name" >>"$root/etc/gshadow"
fi

mkdir -p -- "$root$home"
chmod 0755 -- "$root$home"
if [[ $(id -u) == 0 ]]; then
    chown "$uid:$uid" -- "$root$home"
elif [[ -z $root ]]; then
    fail "creating a user on this system needs root."
else
    log "not root: $root$home keeps owner $(id -u) (the image build sets $uid)"
fi
log "user $name (uid $uid, gid $uid), home $home"
