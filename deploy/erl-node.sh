#!/bin/sh
# Starts an Erlang node (in the erlang image) with the command line that
# `beamgate node-flags` wrote for it (see node-setup.sh), and any further erl
# arguments given after the name:
#   erl-node.sh app@alpha.example -noinput
#   erl-node.sh ops_admin@alpha.example -noshell -eval '...'
# The node reads the cookie from $BEAMGATE_RUN_DIR/home/.erlang.cookie (mode
# 0400, written by node-setup.sh): HOME points there, so the cookie is in
# neither the node's command line nor its environment.
set -eu
[ "$#" -ge 1 ] || { echo "erl-node: usage: erl-node.sh NODE [erl args]" >&2; exit 2; }
name=$1
shift
run=${BEAMGATE_RUN_DIR:-/run/beamgate}
cmd=$run/$name.cmd
[ -r "$cmd" ] || { echo "erl-node: $cmd is missing: node-setup has not written flags for $name" >&2; exit 2; }
[ -r "$run/home/.erlang.cookie" ] || { echo "erl-node: $run/home/.erlang.cookie is missing or unreadable: node-setup writes it from ERLANG_COOKIE" >&2; exit 2; }
# The file holds one shell-quoted command line starting with `erl`; "$@" (the
# extra arguments) is expanded before `set` replaces it.
eval "set -- $(cat "$cmd") \"\$@\""
unset ERLANG_COOKIE
HOME=$run/home
export HOME
exec "$@"
