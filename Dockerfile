# syntax=docker/dockerfile:1
# Two targets from one build:
#   docker build --target demo-service -t demo-service .
#   docker build --target operator -t graceful-shutdown-operator .
# Runtime: distroless Node 24, non-root (uid 65532), no shell and no npm: `node` is PID 1 and
# receives SIGTERM itself (npm start would not forward it). No shell also means a preStop hook
# must use the native `sleep` action, not `sh -c "sleep N"`.

ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

# What the build is (npm run image passes them): baked into build-info.json for --version and
# the gracefulshutdown_build_info metric, and into the operator image's OCI labels.
ARG VERSION=""
ARG REVISION=""
ARG SOURCE="https://github.com/graceful-shutdown-operator/graceful-shutdown-operator"

# Compile TypeScript to JavaScript: no type stripping at start-up, no TypeScript in the image.
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency's installer is not needed, the image has Node 24.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY operator ./operator
COPY demo-service ./demo-service
# tsc directly: `npm run` would put the uninstalled node_modules/.bin/node first on PATH.
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json
# Declared here, after the steps above, so that a new version or revision reuses their layers.
ARG VERSION
ARG REVISION
# Without VERSION, the version of package.json (operator/src/version.ts reads either).
RUN node -e 'const fs = require("fs"); const v = process.env.VERSION || require("./package.json").version; fs.writeFileSync("dist/operator/src/build-info.json", JSON.stringify({ version: v, revision: process.env.REVISION || "" }) + "\n")'

# The operator's production dependencies: without the OpenTelemetry SDK, which only demo-service's
# opentelemetry-otlp metric shape loads. It is a plain dependency (npm skips optional ones whose
# engines do not match the Node running `npm ci`, and the typecheck needs it), so it is removed
# here from package.json and pruned with what only it needed.
FROM ${BUILD_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm pkg delete dependencies.@opentelemetry/exporter-metrics-otlp-http \
      dependencies.@opentelemetry/resources dependencies.@opentelemetry/sdk-metrics \
      dependencies.@opentelemetry/api \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${BUILD_IMAGE} AS demo-deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${RUNTIME_IMAGE} AS runtime-base
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /src/package.json ./package.json
# Numeric, so that runAsNonRoot can be verified by the kubelet.
USER 65532:65532

FROM runtime-base AS demo-service
COPY --from=demo-deps /src/node_modules ./node_modules
COPY --from=build /src/dist/demo-service ./dist/demo-service
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "dist/demo-service/src/main.js"]

FROM runtime-base AS operator
ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="graceful-shutdown-operator" \
      org.opencontainers.image.description="Kubernetes operator that enforces graceful shutdown settings computed from observed latency" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist/operator ./dist/operator
ENTRYPOINT ["/nodejs/bin/node", "dist/operator/src/main.js"]
