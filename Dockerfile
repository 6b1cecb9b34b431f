# kubelambda's container image: one statically linked binary on an empty base (`scratch`), run as
# the non-root user 65532, with CA certificates. The hook evaluation workers are the same binary,
# started again through /proc/self/exe, so nothing else is needed inside.
#
#   docker build -t kubelambda .                     (or: buildah bud -t kubelambda .)
#
# The binary is glibc, linked statically (`-C target-feature=+crt-static`), not musl: the musl
# target's standard library comes only from rustup's download server, which the machines this
# project is built and checked on cannot reach, while crt-static needs nothing beyond the Rust
# toolchain and Debian's libc6-dev. Static glibc resolves host names through the `files` and
# `dns` services built into it (no NSS modules are loaded); CI checks that it resolves the API
# server's name through /etc/resolv.conf from inside the image.
#
# What CI checks (.ci/packaging.sh): it cannot pull the Rust base image below (no container
# registry is reachable there), so it runs the `build` stage's two steps itself, with the same
# commands and packaging/rootfs.sh, on the CI machine's Rust toolchain (Debian 12, like this base
# image), and hands the result to this file's final stage with
# `buildah bud --build-context build=DIR`, which stands in for the stage of that name. The final
# stage, the image's metadata and files, and the binary started from the unpacked image (as user
# 65532 without capabilities, on a read-only root, with the Deployment's arguments) are checked
# there; this build stage as such is not.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The target is named so that RUSTFLAGS reach only the binary, not build scripts and proc-macros
# (which must stay dynamic to be loaded by rustc).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" \
 && packaging/rootfs.sh "target/$target/release/kubelambda" /rootfs

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 8081 9999
ENTRYPOINT ["/usr/local/bin/kubelambda"]
CMD ["run"]
