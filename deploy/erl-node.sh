#!/bin/sh
# Starts an Erlang node (in the erlang image) with the command line that
# `beamgate node-flags` wrote for it (see node-setup.sh), the cookie from
# $ERLANG_COOKIE, and any further erl arguments given after the name:
#   erl-node.sh app@alpha.example -noinput
#   erl-node.sh ops_admin@alpha.example -noshell -eval '...'
set -eu
[ "$#" -ge 1 ] || { echo "erl-node: usage: erl-node.sh NODE [erl args]" >&2; exit 2; }
name=$1
shift
cmd=${BEAMGATE_RUN_DIR:-/run/beamgate}/$name.cmd
[ -r "$cmd" ] || { echo "erl-node: $cmd is missing: node-setup has not written flags for $name" >&2; exit 2; }
: "${ERLANG_COOKIE:?erl-node: set ERLANG_COOKIE (the same on every host)}"
# The file holds one shell-quoted command line starting with `erl`; "$@" (the
# extra arguments) is expanded before `set` replaces it.
eval "set -- $(cat "$cmd") \"\$@\""
exec "$@" -setcookie "$ERLANG_COOKIE"
