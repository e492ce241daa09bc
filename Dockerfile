# Multi-stage build of module-controller: a static binary on a minimal,
# non-root image with CA certificates. Build with `docker build .` (or
# `make image` on a machine with a container builder).
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.0.0-dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/moduleops/module-controller/pkg/version.Version=${VERSION} -X github.com/moduleops/module-controller/pkg/version.Commit=${COMMIT}" \
      -o /out/module-controller ./cmd/module-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/module-controller /module-controller
USER 65532:65532
ENTRYPOINT ["/module-controller"]
