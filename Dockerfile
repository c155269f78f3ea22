# syntax=docker/dockerfile:1
# Two targets from one build:
#   docker build --target demo-service -t demo-service .
#   docker build --target operator -t graceful-shutdown-operator .
# Runtime: distroless Node 24, non-root (uid 65532), no shell and no npm: `node` is PID 1 and
# receives SIGTERM itself (npm start would not forward it). No shell also means a preStop hook
# must use the native `sleep` action, not `sh -c "sleep N"`.

ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

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

# Production dependencies only, shared by both targets.
FROM ${BUILD_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${RUNTIME_IMAGE} AS runtime-base
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /src/package.json ./package.json
COPY --from=deps /src/node_modules ./node_modules
# Numeric, so that runAsNonRoot can be verified by the kubelet.
USER 65532:65532

FROM runtime-base AS demo-service
COPY --from=build /src/dist/demo-service ./dist/demo-service
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "dist/demo-service/src/main.js"]

FROM runtime-base AS operator
COPY --from=build /src/dist/operator ./dist/operator
ENTRYPOINT ["/nodejs/bin/node", "dist/operator/src/main.js"]
