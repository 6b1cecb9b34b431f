//! Import resolution for hooks: relative to the importing file, then the hook's `jpath`, then the
//! global `-J` dirs, then the library bundled in the binary (`templates/`). Every candidate goes
//! through the import boundary ([`ImportRoots`]): nothing outside the hook's roots, nothing under
//! `/proc`, `/sys` or `/dev`, no symlink out of the roots.
//!
//! Every file read is stamped (size and mtime) so the evaluator can tell when a hook or anything it
//! imports changed on disk and must be evaluated afresh.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use jrsonnet_evaluator::{
    AsPathLike, IStr, ImportResolver,
    error::{ErrorKind, Result},
};
use jrsonnet_gcmodule::Acyclic;

use crate::hooks::FileStamp;
use crate::hooks::boundary::ImportRoots;
use jrsonnet_ir::{SourceFifo, SourceFile, SourcePath, SourceVirtual};

/// Files bundled into the binary, importable by name from any hook.
pub const BUNDLED: &[(&str, &str)] = &[(
    "kubelambda.libsonnet",
    include_str!("../../../templates/kubelambda.libsonnet"),
)];

/// The files one evaluation state has read, shared with the evaluator.
pub type Stamps = Rc<RefCell<Vec<FileStamp>>>;

#[derive(Acyclic)]
pub struct HookImportResolver {
    roots: ImportRoots,
    /// The hook file itself (its real path): readable wherever the operator put it.
    main: Option<PathBuf>,
    stamps: Stamps,
    /// A hook file's text as the controller read it ([`HookSource::JsonnetFileText`]): served
    /// for that path instead of the file on disk, and not stamped, since the disk's version
    /// is not the one evaluated.
    ///
    /// [`HookSource::JsonnetFileText`]: crate::hooks::HookSource::JsonnetFileText
    main_text: Option<(PathBuf, String)>,
}

impl HookImportResolver {
    pub fn new(roots: ImportRoots, main: Option<PathBuf>, stamps: Stamps) -> Self {
        Self {
            roots,
            main,
            stamps,
            main_text: None,
        }
    }

    /// Serves `code` as the contents of `path` (the hook file, as the controller read it).
    pub fn with_main_text(mut self, path: PathBuf, code: String) -> Self {
        self.main_text = Some((path, code));
        self
    }
}

fn refused(message: String) -> jrsonnet_evaluator::Error {
    ErrorKind::RuntimeError(IStr::from(message.as_str())).into()
}

impl ImportResolver for HookImportResolver {
    fn resolve_from(&self, from: &SourcePath, path: &dyn AsPathLike) -> Result<SourcePath> {
        let resolved = path.as_path();
        let wanted: &Path = resolved.as_ref();
        let candidates: Vec<PathBuf> = if wanted.is_absolute() {
            vec![wanted.to_path_buf()]
        } else {
            let beside = from
                .downcast_ref::<SourceFile>()
                .and_then(|file| file.path().parent())
                .map(|dir| dir.join(wanted));
            beside
                .into_iter()
                .chain(self.roots.search_dirs().map(|dir| dir.join(wanted)))
                .collect()
        };
        for candidate in candidates {
            match self.roots.check(wanted, &candidate) {
                Ok(Some(real)) => return Ok(SourcePath::new(SourceFile::new(real))),
                Ok(None) => {}
                Err(e) => return Err(refused(e.to_string())),
            }
        }
        if let Some(name) = wanted
            .to_str()
            .filter(|name| BUNDLED.iter().any(|(n, _)| n == name))
        {
            return Ok(SourcePath::new(SourceVirtual(IStr::from(name))));
        }
        Err(refused(format!(
            "import {:?}: no such file in the hook's import roots ({})",
            wanted.display().to_string(),
            self.roots
        )))
    }

    fn load_file_contents(&self, resolved: &SourcePath) -> Result<Vec<u8>> {
        if let Some(file) = resolved.downcast_ref::<SourceFile>() {
            if let Some((path, code)) = &self.main_text
                && file.path() == path
            {
                return Ok(super::trace::rewrite(&path.display().to_string(), code).into_bytes());
            }
            // Only paths `resolve_from` accepted, or the hook itself, reach here; checked again
            // so nothing else that builds a file source can read past the boundary.
            let path = file.path();
            if self.main.as_deref() != Some(path) && !self.roots.allows_real(path) {
                return Err(refused(format!(
                    "read {}: outside the hook's import roots ({})",
                    path.display(),
                    self.roots
                )));
            }
            let stamp = FileStamp::of(path);
            let bytes = std::fs::read(path)
                .map_err(|e| ErrorKind::ImportIo(format!("{}: {e}", path.display())))?;
            if let Some(stamp) = stamp {
                self.stamps.borrow_mut().push(stamp);
            }
            return Ok(match String::from_utf8(bytes) {
                Ok(text) => super::trace::rewrite(&path.display().to_string(), &text).into_bytes(),
                Err(e) => e.into_bytes(),
            });
        }
        // `--tla-code` and `--ext-code` arrive as in-memory "fifo" sources.
        if let Some(fifo) = resolved.downcast_ref::<SourceFifo>() {
            return Ok(fifo.1.to_vec());
        }
        let bundled = resolved
            .downcast_ref::<SourceVirtual>()
            .and_then(|virt| BUNDLED.iter().find(|(n, _)| *n == &*virt.0));
        if let Some((_, text)) = bundled {
            return Ok(text.as_bytes().to_vec());
        }
        Err(ErrorKind::ResolvedFileNotFound(resolved.clone()).into())
    }
}
