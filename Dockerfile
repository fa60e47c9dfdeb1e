# The beamgate gateway. Build: docker build -t beamgate:local .
# Run: the roster and this host's TLS files are mounted, never baked in:
#   docker run -v $PWD/config:/app/config:ro -v $PWD/certs/...:/app/certs/...:ro \
#     -e BEAMGATE_GATEWAY=alpha beamgate:local --config /app/config/cluster.yaml

# The Node.js 20 base image: upstream's by default; docker-compose.yml passes
# NODE_IMAGE, for a private registry or a local stand-in.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# A C compiler for the native data plane (build/fastpath.node); Node's headers,
# OpenSSL's among them, come with the image. It stays in this stage (a base
# that has one already needs no apt).
RUN command -v gcc >/dev/null || { apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*; }
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
COPY native ./native
COPY scripts/build-native.sh ./scripts/build-native.sh
# Compile, build the native data plane, then drop the compiler and test tools from node_modules.
RUN npm run build && bash scripts/build-native.sh && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# package.json is read at run time (the version in beamgate_build_info).
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/build ./build
# Mount points: the roster, the TLS files, and the run directory where
# deploy/node-setup.sh writes the nodes' inetrc, flags and cookie file (a named volume
# copies this directory's owner on first use, so `node` may write there).
# /run/beamgate-takeover: the take-over socket's directory, a named volume per
# host that only that host's gateway containers mount (docs/upgrade.md).
RUN mkdir -p /app/config /app/certs /run/beamgate /run/beamgate-takeover && chown node:node /run/beamgate /run/beamgate-takeover && chmod 0700 /run/beamgate-takeover
# The image's unprivileged user (uid 1000); the key file must belong to it, mode 0600.
USER node
# 4370: TLS between gateways; 9464: /metrics, /healthz, /readyz.
EXPOSE 4370 9464
# SIGTERM drains open links (limits.drainTimeoutMs) before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli/main.js", "run"]
CMD ["--config", "/app/config/cluster.yaml"]
