//! The `Authorization` header of a webhook, built once from Secret values when the controller
//! starts: `"<type> <credential>"` for `authorization`, `"Basic base64(user:pass)"` for
//! `basicAuth`. Values are trimmed because Secrets made from files usually end in a newline,
//! which would otherwise end up inside the header (and make it invalid).

use base64::Engine;
use http::HeaderValue;

/// Why Secret values cannot make a header. The caller adds which Secret and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The value is not UTF-8 text.
    #[error("is not UTF-8 text")]
    NotText,
    /// The value is empty or only whitespace.
    #[error("is empty")]
    Empty,
    /// Basic auth cannot carry a ':' in the user name: it is the separator.
    #[error("contains ':', which HTTP Basic authentication cannot carry in a user name")]
    ColonInUsername,
    /// The header would hold control characters (a newline inside the token, for example).
    #[error("cannot be sent in an HTTP header (control characters)")]
    NotHeaderSafe,
}

fn text(value: &[u8]) -> Result<&str, CredentialError> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| CredentialError::NotText)
}

fn sensitive(header: String) -> Result<HeaderValue, CredentialError> {
    let mut value = HeaderValue::from_str(&header).map_err(|_| CredentialError::NotHeaderSafe)?;
    value.set_sensitive(true);
    Ok(value)
}

/// `"<scheme> <trimmed credential>"`. An empty credential is refused: it would send a header
/// that cannot authenticate anything, which is a misconfiguration worth reporting at start.
pub fn authorization_header(
    scheme: &str,
    credential: &[u8],
) -> Result<HeaderValue, CredentialError> {
    let credential = text(credential)?;
    if credential.is_empty() {
        return Err(CredentialError::Empty);
    }
    sensitive(format!("{} {credential}", scheme.trim()))
}

/// Which basic-auth value is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicField {
    Username,
    Password,
}

/// `"Basic base64(<trimmed user>:<trimmed password>)"`.
pub fn basic_header(
    username: &[u8],
    password: &[u8],
) -> Result<HeaderValue, (BasicField, CredentialError)> {
    let username = text(username).map_err(|e| (BasicField::Username, e))?;
    let password = text(password).map_err(|e| (BasicField::Password, e))?;
    if username.contains(':') {
        return Err((BasicField::Username, CredentialError::ColonInUsername));
    }
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    sensitive(format!("Basic {encoded}")).map_err(|e| (BasicField::Password, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(value: &HeaderValue) -> &str {
        value.to_str().expect("ASCII header")
    }

    #[test]
    fn authorization_is_scheme_space_trimmed_value() {
        let header = authorization_header("Bearer", b"  t0ken\n").expect("valid");
        assert_eq!(shown(&header), "Bearer t0ken");
        assert!(
            header.is_sensitive(),
            "credentials stay out of debug output"
        );
        let custom = authorization_header("Token", b"abc").expect("valid");
        assert_eq!(shown(&custom), "Token abc");
        assert_eq!(
            authorization_header("Bearer", b" \n"),
            Err(CredentialError::Empty)
        );
        assert_eq!(
            authorization_header("Bearer", b"\xff"),
            Err(CredentialError::NotText)
        );
        assert_eq!(
            authorization_header("Bearer", b"a\nb"),
            Err(CredentialError::NotHeaderSafe)
        );
    }

    #[test]
    fn basic_is_base64_of_trimmed_user_and_password() {
        let header = basic_header(b"alice\n", b" s3cret:x \n").expect("valid");
        // base64("alice:s3cret:x")
        assert_eq!(shown(&header), "Basic YWxpY2U6czNjcmV0Ong=");
        assert!(header.is_sensitive());
        assert_eq!(
            basic_header(b"al:ice", b"pw"),
            Err((BasicField::Username, CredentialError::ColonInUsername))
        );
        assert_eq!(
            basic_header(b"alice", b"\xfe"),
            Err((BasicField::Password, CredentialError::NotText))
        );
    }
}
