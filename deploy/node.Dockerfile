# The Erlang node image: an Erlang/OTP base image with deploy/erl-node.sh as
# its entrypoint, which starts a node with the flags node-setup wrote for it.
# The base is a build argument, upstream's by default (docker-compose.yml passes
# ERLANG_IMAGE and OTP_RELEASE): docker build --build-arg OTP_RELEASE=28 -f deploy/node.Dockerfile deploy
ARG ERLANG_IMAGE=erlang
ARG OTP_RELEASE=27
FROM ${ERLANG_IMAGE}:${OTP_RELEASE}
# On PATH: `docker-compose exec node-alpha-app beamgate-erl-node ops_jane@alpha.example -remsh app@beta.example`.
COPY erl-node.sh /usr/local/bin/beamgate-erl-node
RUN chmod 0755 /usr/local/bin/beamgate-erl-node
ENTRYPOINT ["/bin/sh", "/usr/local/bin/beamgate-erl-node"]
