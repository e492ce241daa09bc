# A Dockerfile that breaks every rule dockerlint checks.
ARG GO_VERSION=1.25.0
FROM golang:1.25 as Build
WORKDIR src
RUN go build -o /x .
FROM scratch
COPY --from=Build /x /x
ENTRYPOINT /x
