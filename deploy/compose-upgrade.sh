#!/bin/sh
# Upgrades one gateway of the docker-compose deployment by take-over: no node
# of its host sees a nodedown (docs/upgrade.md, "docker-compose").
#
#   docker-compose build gateway-beta        # the new image, under the service's image name
#   deploy/compose-upgrade.sh gateway-beta   # from the project directory, as you run docker-compose
#
# A second container of the service is started from the image the service now
# names (docker-compose up --scale SERVICE=2 --no-recreate), in the same host
# holder's network namespace and with the same take-over volume. Its gateway
# is started with --take-over-if-running: it finds the running one on the
# take-over socket and takes its listeners, registrations and links over; the
# old gateway exits 0. Before that, the old container's restart policy is set
# to `no`, or Docker would start the old image again once it exits (and that
# gateway, finding the new one running, would take everything back). The old
# container is then removed; the new one is the service's container from then
# on, with the service's restart policy.
#
# If the new gateway fails before it has taken over (it exits or Docker
# restarts it), the old one serves on (take-overs roll back): the new
# container is removed, the old container's restart policy restored, and the
# script exits 1 with the new gateway's last log lines.
#
#   COMPOSE            the compose command (default docker-compose); COMPOSE_FILE,
#                      COMPOSE_PROJECT_NAME and the other variables of docker-compose apply
#   UPGRADE_TIMEOUT_S  how long to wait for the take-over (default 120: a take-over is
#                      bounded by 30 s, TAKEOVER_TIMEOUT_MS, after the new process's start)
set -eu

service="${1:?usage: deploy/compose-upgrade.sh SERVICE (a gateway service, e.g. gateway-beta)}"
compose="${COMPOSE:-docker-compose}"
timeout_s="${UPGRADE_TIMEOUT_S:-120}"

say() { echo "compose-upgrade: $*" >&2; }
state() { docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}' "$1"; }

old="$($compose ps -q "$service")"
case "$old" in
  "") say "$service has no container: start it with docker-compose up -d first"; exit 1 ;;
  *[!0-9a-f]*) say "$service has more than one container ($(echo "$old" | tr '\n' ' ')): one at a time"; exit 1 ;;
esac
if [ "$(state "$old" | cut -d' ' -f1)" != running ]; then
  say "$service's container $old is not running"
  exit 1
fi
policy="$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$old")"

docker update --restart=no "$old" >/dev/null
say "starting the new gateway of $service beside ${old%"${old#????????????}"}"
if ! $compose up -d --no-deps --no-recreate --no-build --scale "$service=2" "$service"; then
  docker update --restart="$policy" "$old" >/dev/null
  say "docker-compose could not start the new container; the old one serves on"
  exit 1
fi
new="$($compose ps -q "$service" | grep -v "^$old\$" || true)"
if [ -z "$new" ]; then
  docker update --restart="$policy" "$old" >/dev/null
  say "no new container of $service appeared; the old one serves on"
  exit 1
fi

fail() {
  say "$1; the old gateway serves on. The new gateway's last lines:"
  docker logs --tail 20 "$new" >&2 2>&1 || true
  docker rm -f "$new" >/dev/null
  docker update --restart="$policy" "$old" >/dev/null
  exit 1
}

deadline=$(($(date +%s) + timeout_s))
while :; do
  set -- $(state "$old")
  old_status=$1 old_code=$2
  set -- $(state "$new")
  new_status=$1 new_restarts=$3
  if [ "$new_status" != running ] || [ "$new_restarts" != 0 ]; then
    fail "the new gateway stopped before it took over ($new_status, restarted $new_restarts times)"
  fi
  if [ "$old_status" = exited ]; then break; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    fail "no take-over within ${timeout_s} s"
  fi
  sleep 0.5
done
# The old gateway exits 0 once it has handed over; anything else is a crash of
# its own, and the new gateway then took nothing: the old container starts again.
if [ "$old_code" != 0 ] || ! docker logs "$new" 2>&1 | grep -q '"msg":"took over"'; then
  say "the old gateway exited $old_code without handing over (docker logs $old); starting it again"
  docker rm -f "$new" >/dev/null
  docker update --restart="$policy" "$old" >/dev/null
  docker start "$old" >/dev/null
  exit 1
fi
docker rm "$old" >/dev/null
say "$service upgraded: $($compose ps -q "$service") took over from $old"
