# syntax=docker/dockerfile:1
# module-controller image: a static binary on distroless (CA certificates,
# /etc/passwd with user nonroot, nothing else). Build with `make image`, which
# passes GO_VERSION from go.mod and VERSION/COMMIT from git; linted in CI by
# hack/dockerlint (BuildKit's Dockerfile checks plus this project's rules).
ARG GO_VERSION=1.26.0

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.0.0-dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -buildvcs=false -trimpath \
      -ldflags "-s -w -X github.com/moduleops/module-controller/pkg/version.Version=${VERSION} -X github.com/moduleops/module-controller/pkg/version.Commit=${COMMIT}" \
      -o /out/module-controller ./cmd/module-controller

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/module-controller /module-controller
USER nonroot
ENTRYPOINT ["/module-controller"]
