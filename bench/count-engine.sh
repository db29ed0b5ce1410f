#!/bin/sh
# The bench's engine counter (bench/counting.py): linked as `tofu` and `pulumi` in a folder first on PATH, it
# records which engine was started with which subcommand, then becomes the real engine in BENCH_ENGINE_DIR.
# Only the leading subcommand words are recorded (at most two, e.g. `stack output`): the rest of a command line
# may hold values.
set -eu
engine=${0##*/}
words=
for arg do
    case $arg in
    -*) [ -z "$words" ] || break ;;
    *)
        words="${words:+$words }$arg"
        [ "${words#* }" = "$words" ] || break
        ;;
    esac
done
printf '%s %s\n' "$engine" "${words:-(none)}" >>"${BENCH_ENGINE_LOG:?}"
exec "${BENCH_ENGINE_DIR:?}/$engine" "$@"
