//! Container image names as go-containerregistry's `name` package parses them (kubecfg's
//! `resolveImage` without a registry lookup).

use thiserror::Error;

/// Why an image reference was rejected by [`normalize_image_name`]. The messages follow
/// go-containerregistry's `name` package, prefixed like kubecfg's `parsing reference %q: …`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageNameError {
    /// The repository part is empty (e.g. `""` or `":tag"`).
    #[error("parsing reference {image:?}: a repository name must be specified")]
    EmptyRepository { image: String },
    /// A repository or tag is too short or too long (counted in characters).
    #[error(
        "parsing reference {image:?}: {element} must be between {min} and {max} characters in length: {value}"
    )]
    Length {
        image: String,
        element: &'static str,
        min: usize,
        max: usize,
        value: String,
    },
    /// A repository or tag contains a character outside its allowed set (repositories must be
    /// lowercase).
    #[error(
        "parsing reference {image:?}: {element} can only contain the characters `{allowed}`: {value}"
    )]
    Characters {
        image: String,
        element: &'static str,
        allowed: &'static str,
        value: String,
    },
    /// The registry host is not a valid URI authority (bad port, space, `%`, …).
    #[error(
        "parsing reference {image:?}: registries must be valid RFC 3986 URI authorities: {registry}"
    )]
    Registry { image: String, registry: String },
    /// More than one `@`.
    #[error(
        "parsing reference {image:?}: a digest must contain exactly one '@' separator (e.g. registry/repository@digest) saw: {image}"
    )]
    DigestSeparator { image: String },
    /// The digest is not `sha256:…`.
    #[error("parsing reference {image:?}: unsupported digest algorithm: {digest}")]
    DigestAlgorithm { image: String, digest: String },
    /// The sha256 hex is not 64 characters long.
    #[error("parsing reference {image:?}: invalid checksum digest length: {digest}")]
    DigestLength { image: String, digest: String },
    /// The sha256 hex contains something other than `[a-f0-9]`.
    #[error("parsing reference {image:?}: invalid checksum digest format: {digest}")]
    DigestFormat { image: String, digest: String },
}

const DEFAULT_REGISTRY: &str = "index.docker.io";
const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";
const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// kubecfg's `resolveImage` in its default `noop` mode: go-containerregistry
/// `name.ParseReference` (weak validation) followed by kubecfg's `ImageName.String()`.
///
/// * `busybox` → `docker.io/library/busybox:latest`; `foo/bar` → `docker.io/foo/bar:latest`.
/// * The first path component is a registry only if it contains `.` or `:` (so `localhost/x` is
///   a Docker Hub repository, `localhost:5000/xy` is a registry); `index.docker.io` and
///   `docker.io` both print as `docker.io`.
/// * `repo@sha256:<64 lowercase hex>` keeps the digest and gets no tag; a tag next to a digest
///   (`repo:1@sha256:…`) is dropped, as go-containerregistry does.
/// * Repositories must be 2–255 characters of `[a-z0-9_./-]`, tags 1–128 of `[A-Za-z0-9_.-]`;
///   an empty tag (`busybox:`) means `latest`.
pub fn normalize_image_name(image: &str) -> Result<String, ImageNameError> {
    let reference = if image.contains('@') {
        parse_digest_reference(image)?
    } else {
        parse_tag_reference(image, image)?
    };
    let registry = if reference.registry == DEFAULT_REGISTRY {
        "docker.io"
    } else {
        reference.registry.as_str()
    };
    let separator = if reference.is_digest { '@' } else { ':' };
    Ok(format!(
        "{registry}/{}{separator}{}",
        reference.repository_str(),
        reference.identifier
    ))
}

struct ParsedReference {
    registry: String,
    repository: String,
    /// Tag or digest.
    identifier: String,
    is_digest: bool,
}

impl ParsedReference {
    /// go-containerregistry's `RepositoryStr`: Docker Hub repositories without a namespace live
    /// under `library/`.
    fn repository_str(&self) -> String {
        if !self.repository.contains('/') && self.registry == DEFAULT_REGISTRY {
            format!("library/{}", self.repository)
        } else {
            self.repository.clone()
        }
    }
}

/// `name.NewTag`: the last `:`-separated part is a tag unless it contains a `/` (then the colon
/// belonged to a registry port).
fn parse_tag_reference(name: &str, image: &str) -> Result<ParsedReference, ImageNameError> {
    let mut base = name;
    let mut tag = "";
    if let Some((before, after)) = name.rsplit_once(':')
        && !after.contains('/')
    {
        base = before;
        tag = after;
    }
    if !tag.is_empty() {
        check_element(image, "tag", tag, TAG_CHARS, 1, 128)?;
    }
    let (registry, repository) = parse_repository(base, image)?;
    Ok(ParsedReference {
        registry,
        repository,
        identifier: if tag.is_empty() { "latest" } else { tag }.to_string(),
        is_digest: false,
    })
}

/// `name.NewDigest`: exactly one `@`, a `sha256:` digest of 64 lowercase hex digits; a tag in
/// front of the `@` is validated and then dropped.
fn parse_digest_reference(image: &str) -> Result<ParsedReference, ImageNameError> {
    let mut parts = image.split('@');
    let (Some(base), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ImageNameError::DigestSeparator {
            image: image.to_string(),
        });
    };
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(ImageNameError::DigestAlgorithm {
            image: image.to_string(),
            digest: digest.to_string(),
        });
    };
    if hex.len() != 64 {
        return Err(ImageNameError::DigestLength {
            image: image.to_string(),
            digest: digest.to_string(),
        });
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ImageNameError::DigestFormat {
            image: image.to_string(),
            digest: digest.to_string(),
        });
    }
    let (registry, repository) = match parse_tag_reference(base, image) {
        // go-containerregistry re-parses `tag.Repository.Name()`, i.e. registry + repository
        // without the tag; the result is the same registry and `RepositoryStr`.
        Ok(tagged) => {
            let repository = tagged.repository_str();
            (tagged.registry, repository)
        }
        Err(_) => parse_repository(base, image)?,
    };
    Ok(ParsedReference {
        registry,
        repository,
        identifier: digest.to_string(),
        is_digest: true,
    })
}

/// `name.NewRepository` (weak validation): returns `(registry, repository)`.
fn parse_repository(name: &str, image: &str) -> Result<(String, String), ImageNameError> {
    if name.is_empty() {
        return Err(ImageNameError::EmptyRepository {
            image: image.to_string(),
        });
    }
    let mut registry = "";
    let mut repository = name;
    if let Some((first, rest)) = name.split_once('/')
        && (first.contains('.') || first.contains(':'))
    {
        registry = first;
        repository = rest;
    }
    check_element(image, "repository", repository, REPOSITORY_CHARS, 2, 255)?;
    if !is_valid_uri_authority(registry) {
        return Err(ImageNameError::Registry {
            image: image.to_string(),
            registry: registry.to_string(),
        });
    }
    let registry = match registry {
        "" | "docker.io" => DEFAULT_REGISTRY,
        other => other,
    };
    Ok((registry.to_string(), repository.to_string()))
}

/// go-containerregistry's `checkElement`: length in characters, then the allowed character set.
fn check_element(
    image: &str,
    element: &'static str,
    value: &str,
    allowed: &'static str,
    min: usize,
    max: usize,
) -> Result<(), ImageNameError> {
    let count = value.chars().count();
    if count < min || count > max {
        return Err(ImageNameError::Length {
            image: image.to_string(),
            element,
            min,
            max,
            value: value.to_string(),
        });
    }
    if value.chars().any(|c| !allowed.contains(c)) {
        return Err(ImageNameError::Characters {
            image: image.to_string(),
            element,
            allowed,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// go-containerregistry accepts a registry when Go's `url.Parse("//" + name).Host == name`.
/// That holds when the name has no control characters, no URL delimiters (`#?/@`), no `%`
/// (percent-decoding would change it), only ASCII characters Go allows in a host, and a port
/// (text after the last `:`, or after `]` for a bracketed IPv6 literal) made of digits only.
fn is_valid_uri_authority(name: &str) -> bool {
    let allowed_ascii = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '!' | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | ':'
                    | '['
                    | ']'
                    | '<'
                    | '>'
                    | '"'
                    | '-'
                    | '_'
                    | '.'
                    | '~'
            )
    };
    if name.chars().any(|c| c.is_ascii() && !allowed_ascii(c)) {
        return false;
    }
    let valid_port = |port: &str| {
        port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(bracketed) = name.strip_prefix('[') {
        let Some(close) = bracketed.rfind(']') else {
            return false;
        };
        let literal = &bracketed[..close];
        valid_port(&bracketed[close + 1..]) && literal.parse::<std::net::Ipv6Addr>().is_ok()
    } else if let Some(colon) = name.rfind(':') {
        valid_port(&name[colon..])
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_ok(input: &str) -> String {
        match normalize_image_name(input) {
            Ok(s) => s,
            Err(e) => panic!("{input}: unexpected error {e}"),
        }
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn image_names_are_normalised_like_go_containerregistry() {
        assert_eq!(image_ok("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(image_ok("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(image_ok("busybox:"), "docker.io/library/busybox:latest");
        assert_eq!(image_ok("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(image_ok("gcr.io/x/y:1"), "gcr.io/x/y:1");
        assert_eq!(image_ok("gcr.io/xy"), "gcr.io/xy:latest");
        assert_eq!(
            image_ok("index.docker.io/foo/bar:v1"),
            "docker.io/foo/bar:v1"
        );
        assert_eq!(
            image_ok("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            image_ok("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            image_ok("registry-1.docker.io/busybox"),
            "registry-1.docker.io/busybox:latest"
        );
        assert_eq!(
            image_ok("localhost:5000/foo/bar"),
            "localhost:5000/foo/bar:latest"
        );
        assert_eq!(image_ok("localhost:5000/xy:2"), "localhost:5000/xy:2");
        // Without a dot or colon the first component is not a registry.
        assert_eq!(image_ok("localhost/foo"), "docker.io/localhost/foo:latest");
        assert_eq!(image_ok("[::1]:5000/foo"), "[::1]:5000/foo:latest");
        assert_eq!(image_ok("quay.io/a/b/c:V1.2_x-y"), "quay.io/a/b/c:V1.2_x-y");
    }

    #[test]
    fn image_digests_are_kept_without_latest() {
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            image_ok(&format!("busybox@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
        assert_eq!(
            image_ok(&format!("gcr.io/x/y@{digest}")),
            format!("gcr.io/x/y@{digest}")
        );
        // A tag next to a digest is dropped.
        assert_eq!(
            image_ok(&format!("busybox:1.0@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
        assert_eq!(
            image_ok(&format!("localhost:5000/foo:1@{digest}")),
            format!("localhost:5000/foo@{digest}")
        );
    }

    #[test]
    fn invalid_image_names_name_the_problem() {
        let err = |s: &str| match normalize_image_name(s) {
            Ok(v) => panic!("{s}: expected an error, got {v}"),
            Err(e) => e,
        };
        assert!(matches!(
            err("Busybox"),
            ImageNameError::Characters {
                element: "repository",
                ..
            }
        ));
        assert_eq!(
            err("Busybox").to_string(),
            "parsing reference \"Busybox\": repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: Busybox"
        );
        assert!(matches!(
            err("a"),
            ImageNameError::Length {
                element: "repository",
                min: 2,
                ..
            }
        ));
        assert!(matches!(
            err("localhost:5000/x"),
            ImageNameError::Length { .. }
        ));
        assert!(matches!(err(""), ImageNameError::EmptyRepository { .. }));
        assert!(matches!(
            err(":tag"),
            ImageNameError::EmptyRepository { .. }
        ));
        assert!(matches!(err("busy box"), ImageNameError::Characters { .. }));
        assert!(matches!(
            err("busybox:bad!tag"),
            ImageNameError::Characters { element: "tag", .. }
        ));
        assert!(matches!(
            err(&format!("busybox:{}", "x".repeat(129))),
            ImageNameError::Length {
                element: "tag",
                max: 128,
                ..
            }
        ));
        assert!(matches!(
            err("host.io:port/foo"),
            ImageNameError::Registry { .. }
        ));
        assert!(matches!(
            err("ho st.io/foo"),
            ImageNameError::Registry { .. }
        ));
        assert!(matches!(
            err("a%41.io/foo"),
            ImageNameError::Registry { .. }
        ));
        assert!(matches!(
            err("busybox@sha256:abc"),
            ImageNameError::DigestLength { .. }
        ));
        assert!(matches!(
            err(&format!("busybox@sha256:{}", HEX.to_uppercase())),
            ImageNameError::DigestFormat { .. }
        ));
        assert!(matches!(
            err(&format!("busybox@md5:{HEX}")),
            ImageNameError::DigestAlgorithm { .. }
        ));
        assert!(matches!(
            err(&format!("a@b@sha256:{HEX}")),
            ImageNameError::DigestSeparator { .. }
        ));
        assert_eq!(
            err("busybox@sha256:abc").to_string(),
            "parsing reference \"busybox@sha256:abc\": invalid checksum digest length: sha256:abc"
        );
    }
}
