//! The processor's spill files on a local disk: made in a directory and unlinked at once,
//! so they hold space only while open and a crash leaves nothing behind.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use inferwatch_processor::spill::{SpillDir, SpillFile};

use crate::error::Result;
use crate::failed;

/// A directory of spill files.
#[derive(Debug)]
pub struct FileSpillDir {
    dir: PathBuf,
}

impl FileSpillDir {
    /// Spills into `dir` (created if missing); checked by making one file, so a directory
    /// that cannot take them fails the start, not a run hours later.
    pub fn new(dir: &Path) -> Result<Self> {
        let check = std::fs::create_dir_all(dir).and_then(|_| tempfile::tempfile_in(dir));
        if let Err(e) = check {
            return Err(failed!(
                "spill directory {}: {e}; set runtime.spill_dir to a writable local directory",
                dir.display()
            ));
        }
        Ok(Self { dir: dir.into() })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl SpillDir for FileSpillDir {
    fn create(&self) -> io::Result<Arc<dyn SpillFile>> {
        Ok(Arc::new(Unlinked {
            file: tempfile::tempfile_in(&self.dir)?,
            end: AtomicU64::new(0),
        }))
    }
}

/// A spill file with no name.
#[derive(Debug)]
struct Unlinked {
    file: File,
    end: AtomicU64,
}

impl SpillFile for Unlinked {
    fn append(&self, bytes: &[u8]) -> io::Result<u64> {
        let at = self.end.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.file.write_all_at(bytes, at)?;
        Ok(at)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_read_back_and_leave_no_file_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = FileSpillDir::new(&tmp.path().join("spill")).unwrap();
        let file = dir.create().unwrap();
        let a = file.append(b"abcdefgh").unwrap();
        let b = file.append(b"0123").unwrap();
        assert_eq!((a, b), (0, 8));
        let mut buf = [0u8; 6];
        file.read_at(&mut buf, 5).unwrap();
        assert_eq!(&buf, b"fgh012");
        assert!(file.read_at(&mut [0u8; 8], 8).is_err(), "past the end");
        let names = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 0, "spill files have no names");
    }

    #[test]
    fn a_directory_that_cannot_be_made_fails_the_start_and_says_which_key() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = FileSpillDir::new(&blocker.join("spill")).unwrap_err();
        assert!(err.to_string().contains("runtime.spill_dir"), "{err}");
    }
}
