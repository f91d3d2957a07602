# hookline's image for people with Docker or Podman: `docker build -t hookline/hookline:dev .`
# `make image` builds the equivalent image with no container engine (hack/image): the same
# static binary, CA bundle and uid 65532, no shell.
#
# Multi-platform: docker buildx build --platform linux/amd64,linux/arm64 .
ARG GO_VERSION=1.26
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS TARGETARCH
ARG VERSION=devel
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# No build tags: `hookline dev` and its local control plane stay out of the image.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/hookline ./cmd/hookline

# distroless static: CA bundle, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hookline /hookline
USER 65532:65532
ENTRYPOINT ["/hookline"]
