//! The pipe protocol between the pool and a worker process.
//!
//! Every message is a frame: a little-endian `u32` length, then that many bytes.
//! - pool → worker, once: a JSON [`WorkerInit`] frame;
//! - worker → pool, once, right after the init frame when it asks (`report_confinement`): the
//!   tag [`TAG_CONFINEMENT`], then a JSON [`Confinement`] frame (what the worker gave up). The
//!   pool reads it before the first answer. Asked for, not sent unasked, so a pool and a worker
//!   from builds on either side of this addition still understand each other;
//! - pool → worker, per request: a JSON [`HookSource`] frame, then the raw request body frame;
//! - worker → pool, per request: one tag byte, then
//!   - [`TAG_OK`]: a frame holding the response text, then a JSON frame with the files the
//!     response depends on (`Option<Vec<FileStamp>>`, `null` when it must not be reused or the
//!     pool keeps no cache);
//!   - [`TAG_ERR`]: a frame holding a JSON [`EvalError`](crate::hooks::EvalError).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::hooks::Limits;
use crate::hooks::jsonnet::JsonnetOptions;
use crate::hooks::tera::TeraEnv;

pub use super::confine::Confinement;

pub const TAG_OK: u8 = 0;
pub const TAG_ERR: u8 = 1;
pub const TAG_CONFINEMENT: u8 = 2;

/// Frames above this size are refused: nothing legitimate comes near it, and a corrupt length
/// must not make either side allocate gigabytes.
pub const MAX_FRAME: usize = 1 << 30;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerInit {
    pub options: JsonnetOptions,
    pub limits: Limits,
    /// Whether the pool keeps a response cache. Without one, the dependencies frame is always
    /// `null`, so an uncached request costs no stamp copy or JSON on either side.
    pub report_dependencies: bool,
    /// The variables Tera's `get_env` may read, with their values in the pool's environment
    /// (the worker's own environment is empty).
    #[serde(default)]
    pub tera_env: TeraEnv,
    /// Whether the worker should report its [`Confinement`].
    #[serde(default)]
    pub report_confinement: bool,
}

/// Reads one frame; `Ok(None)` on a clean end of stream before the frame starts.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf)?;
    Ok(Some(buf))
}

pub fn write_frame(output: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    output.write_all(&len.to_le_bytes())?;
    output.write_all(bytes)
}
