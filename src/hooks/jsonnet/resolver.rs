//! Import resolution for hooks: relative to the importing file, then the hook's `jpath`, then the
//! global `-J` dirs, then the library bundled in the binary (`templates/`).
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
    search: Vec<PathBuf>,
    stamps: Stamps,
    /// A hook file's text as the controller read it ([`HookSource::JsonnetFileText`]): served
    /// for that path instead of the file on disk, and not stamped, since the disk's version
    /// is not the one evaluated.
    ///
    /// [`HookSource::JsonnetFileText`]: crate::hooks::HookSource::JsonnetFileText
    main: Option<(PathBuf, String)>,
}

impl HookImportResolver {
    pub fn new(search: Vec<PathBuf>, stamps: Stamps) -> Self {
        Self {
            search,
            stamps,
            main: None,
        }
    }

    /// Serves `code` as the contents of `path`.
    pub fn with_main_text(mut self, path: PathBuf, code: String) -> Self {
        self.main = Some((path, code));
        self
    }
}

fn existing_file(path: &Path) -> Option<SourcePath> {
    let canonical = path.canonicalize().ok()?;
    canonical
        .is_file()
        .then(|| SourcePath::new(SourceFile::new(canonical)))
}

impl ImportResolver for HookImportResolver {
    fn resolve_from(&self, from: &SourcePath, path: &dyn AsPathLike) -> Result<SourcePath> {
        let resolved = path.as_path();
        let wanted: &Path = resolved.as_ref();
        if wanted.is_absolute() {
            if let Some(found) = existing_file(wanted) {
                return Ok(found);
            }
        } else {
            let beside = from
                .downcast_ref::<SourceFile>()
                .and_then(|file| file.path().parent())
                .and_then(|dir| existing_file(&dir.join(wanted)));
            if let Some(found) = beside {
                return Ok(found);
            }
            for dir in &self.search {
                if let Some(found) = existing_file(&dir.join(wanted)) {
                    return Ok(found);
                }
            }
            if let Some(name) = wanted
                .to_str()
                .filter(|name| BUNDLED.iter().any(|(n, _)| n == name))
            {
                return Ok(SourcePath::new(SourceVirtual(IStr::from(name))));
            }
        }
        Err(ErrorKind::ImportFileNotFound(from.clone(), path.as_path().to_owned()).into())
    }

    fn load_file_contents(&self, resolved: &SourcePath) -> Result<Vec<u8>> {
        if let Some(file) = resolved.downcast_ref::<SourceFile>() {
            if let Some((path, code)) = &self.main
                && file.path() == path
            {
                return Ok(super::trace::rewrite(&path.display().to_string(), code).into_bytes());
            }
            let stamp = FileStamp::of(file.path());
            let bytes = std::fs::read(file.path())
                .map_err(|e| ErrorKind::ImportIo(format!("{}: {e}", file.path().display())))?;
            if let Some(stamp) = stamp {
                self.stamps.borrow_mut().push(stamp);
            }
            return Ok(match String::from_utf8(bytes) {
                Ok(text) => {
                    super::trace::rewrite(&file.path().display().to_string(), &text).into_bytes()
                }
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
