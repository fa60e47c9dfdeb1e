#!/bin/sh
# Starts an Erlang node (in the node image, whose entrypoint this is) with the
# command line that `beamgate node-flags` wrote for it (see node-setup.sh), and
# any further erl arguments given after the name:
#   erl-node.sh app@alpha.example -noinput
#   erl-node.sh ops_jane@alpha.example -noshell -eval '...'
# A name without flags of its own that an operator pattern node-setup was given
# matches (ops_*@alpha.example) gets that pattern's flags, under its own name.
# The node reads the cookie from $BEAMGATE_RUN_DIR/home/.erlang.cookie (mode
# 0400, written by node-setup.sh): HOME points there, so the cookie is in
# neither the node's command line nor its environment.
set -eu
[ "$#" -ge 1 ] || { echo "erl-node: usage: erl-node.sh NODE [erl args]" >&2; exit 2; }
name=$1
shift
run=${BEAMGATE_RUN_DIR:-/run/beamgate}
cmd=$run/$name.cmd
operator=""
if [ ! -r "$cmd" ]; then
  for p in "$run"/operators.*.pattern; do
    [ -r "$p" ] || continue
    pattern=$(cat "$p")
    # The host parts are equal and the short name matches the glob (`*`: any run of name characters).
    [ "${name#*@}" = "${pattern#*@}" ] || continue
    short=${name%@*}
    case $short in *[!A-Za-z0-9_-]*) continue ;; esac
    # shellcheck disable=SC2254 # the pattern is a glob on purpose
    case $short in ${pattern%@*}) cmd=${p%.pattern}.cmd; operator=1; break ;; esac
  done
fi
[ -r "$cmd" ] || { echo "erl-node: $cmd is missing: node-setup has not written flags for $name (nor for an operator pattern it matches)" >&2; exit 2; }
[ -r "$run/home/.erlang.cookie" ] || { echo "erl-node: $run/home/.erlang.cookie is missing or unreadable: node-setup writes it from ERLANG_COOKIE" >&2; exit 2; }
# The file holds one shell-quoted command line starting with `erl`; "$@" (the
# extra arguments) is expanded before `set` replaces it.
eval "set -- $(cat "$cmd") \"\$@\""
if [ -n "$operator" ]; then
  # erl -name SAMPLE ...: the pattern's flags, with this node's own name.
  erl=$1 flag=$2
  shift 3
  set -- "$erl" "$flag" "$name" "$@"
fi
unset ERLANG_COOKIE
HOME=$run/home
export HOME
exec "$@"
