//! Reading a response body with a size cap, so one huge answer cannot balloon the controller's
//! memory (a 300 MB answer once took it from 62 to 406 MB). The cap is checked against
//! `Content-Length` before reading, and again as chunks arrive, since a server may send no
//! length or lie about it.

/// Collects chunks until the cap is passed.
#[derive(Debug)]
pub struct CappedBody {
    limit: usize,
    bytes: Vec<u8>,
}

/// The body is larger than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl CappedBody {
    /// A body that accepts at most `limit` bytes. `content_length`, when the server sent one,
    /// is checked first, so an announced oversized body is refused without reading any of it.
    pub fn new(limit: usize, content_length: Option<u64>) -> Result<Self, TooLarge> {
        if content_length.is_some_and(|length| length > limit as u64) {
            return Err(TooLarge);
        }
        // Trust the announced length only for preallocation, and never beyond the cap.
        let capacity = content_length
            .and_then(|length| usize::try_from(length).ok())
            .unwrap_or(0)
            .min(limit);
        Ok(Self {
            limit,
            bytes: Vec::with_capacity(capacity),
        })
    }

    /// Appends one chunk, or fails as soon as the total passes the cap (the caller then stops
    /// reading and drops the connection).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        if self.bytes.len() + chunk.len() > self.limit {
            return Err(TooLarge);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// Appends what still fits and reports whether the cap is reached; for error bodies, which
    /// are only quoted in messages.
    pub fn push_truncating(&mut self, chunk: &[u8]) -> bool {
        let room = self.limit - self.bytes.len();
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.bytes.len() >= self.limit
    }

    /// The bytes read.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// `16 MiB`, `512 KiB` or `1000 bytes`: limits as people write them on the command line.
pub fn format_size(bytes: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    const GIB: usize = 1 << 30;
    match bytes {
        0 => "0 bytes".to_string(),
        b if b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_oversized_bodies_are_refused_before_reading() {
        assert_eq!(CappedBody::new(10, Some(11)).map(drop), Err(TooLarge));
        assert!(CappedBody::new(10, Some(10)).is_ok());
        assert!(CappedBody::new(10, None).is_ok());
        // A lying Content-Length does not make us allocate beyond the cap.
        let body = CappedBody::new(10, Some(u64::MAX)).map(drop);
        assert_eq!(body, Err(TooLarge));
    }

    #[test]
    fn chunks_past_the_cap_fail_at_once() {
        let mut body = CappedBody::new(10, None).expect("no length");
        assert_eq!(body.push(b"12345"), Ok(()));
        assert_eq!(body.push(b"67890"), Ok(()));
        assert_eq!(body.push(b"x"), Err(TooLarge));
        assert_eq!(body.into_bytes(), b"1234567890");
        // A short Content-Length does not let a longer body through.
        let mut body = CappedBody::new(4, Some(2)).expect("small");
        assert_eq!(body.push(b"12345"), Err(TooLarge));
    }

    #[test]
    fn truncating_keeps_the_start() {
        let mut body = CappedBody::new(4, None).expect("no length");
        assert!(!body.push_truncating(b"ab"));
        assert!(body.push_truncating(b"cdef"));
        assert_eq!(body.into_bytes(), b"abcd");
    }

    #[test]
    fn sizes_read_like_flags() {
        assert_eq!(format_size(16 << 20), "16 MiB");
        assert_eq!(format_size(2 << 30), "2 GiB");
        assert_eq!(format_size(512 << 10), "512 KiB");
        assert_eq!(format_size(1000), "1000 bytes");
        assert_eq!(format_size(0), "0 bytes");
    }
}
