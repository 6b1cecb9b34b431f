//! Follows one file by polling its stamp (size and modification time). Polling `stat` of the
//! path, following symlinks, is what sees a mounted ConfigMap change: the kubelet swaps a
//! symlink to a new directory, which inotify on the file itself would not report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::Observed;
use crate::hooks::FileStamp;

/// How often the file's stamp is read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The file's text now.
pub async fn read(path: &Path) -> Observed {
    match tokio::fs::read(path).await {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Observed::Text(text),
            Err(_) => Observed::Unusable("the file is not UTF-8 text".into()),
        },
        Err(e) => Observed::Unusable(format!("cannot read the file: {e}")),
    }
}

/// Reports the file's text whenever its stamp differs from `stamp` (the one it was last read
/// under), until `tx` has no receiver.
pub async fn poll(path: PathBuf, mut stamp: Option<FileStamp>, tx: watch::Sender<Observed>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    while !tx.is_closed() {
        tick.tick().await;
        let now = FileStamp::of(&path);
        if now == stamp {
            continue;
        }
        stamp = now;
        let seen = read(&path).await;
        tx.send_if_modified(|old| {
            let changed = *old != seen;
            *old = seen;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Observed, read};

    #[tokio::test]
    async fn a_missing_or_binary_file_is_unusable_and_says_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = read(&dir.path().join("nope.jsonnet")).await;
        assert!(
            matches!(&missing, Observed::Unusable(why) if why.starts_with("cannot read the file: ")),
            "{missing:?}"
        );
        let binary = dir.path().join("bin.jsonnet");
        std::fs::write(&binary, [0xff, 0xfe]).expect("write");
        assert_eq!(
            read(&binary).await,
            Observed::Unusable("the file is not UTF-8 text".into())
        );
    }
}
