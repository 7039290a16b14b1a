# One image for every role; the command picks the script.
# DENO_IMAGE defaults to the official image. Where no registry can be
# reached, tools/docker_e2e.sh builds a local one from the installed Deno.
ARG DENO_IMAGE=denoland/deno:2.9.6
FROM ${DENO_IMAGE}

# The server's output folder, owned by the unprivileged user so that a named
# volume mounted there starts out writable. Deno does it, as the image may
# have no shell; its cache for this one step goes to /tmp, not /deno-dir.
ENV DENO_DIR=/tmp/deno-build
RUN ["deno", "eval", "Deno.mkdirSync('/data'); Deno.chownSync('/data', 1993, 1993)"]
ENV DENO_DIR=/deno-dir

WORKDIR /app
COPY protocol.ts server.ts client.ts udp_server.ts udp_client.ts ./
# protocol.ts re-exports the focused modules behind it.
COPY protocol/ ./protocol/
COPY lib/ ./lib/
COPY samples/ ./samples/

# The official image's "deno" user; numeric so images without /etc/passwd work too.
USER 1993:1993
ENTRYPOINT ["deno", "run"]
CMD ["--v8-flags=--max-semi-space-size=2", "--allow-net", "--allow-read=/data", "--allow-write=/data", "server.ts", "--out", "/data"]
