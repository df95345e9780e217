# Tributary: one image for the ingest server, pipeline workers and `tributary up`.
# TypeScript runs directly on Node.js 24 (type stripping), so there is no build stage for the code, only
# for the production dependencies (DuckDB's native binding comes prebuilt in its npm package).

FROM node:24-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# V8's young generation capped at 16 MiB per semi-space: ~100 MB less RSS per process, same throughput
# (docs/operations.md, Memory).
ENV NODE_OPTIONS=--max-semi-space-size=16
WORKDIR /app
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
# The project (tributary.yaml, pipelines/, schemas/, models/) is mounted at /project; data under /data.
RUN mkdir -p /project /data && chown node:node /project /data
USER node
WORKDIR /project
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "/app/bin/tributary.js"]
CMD ["up"]
