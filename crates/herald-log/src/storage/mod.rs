//! The one narrow door through which the log touches the disk.
//!
//! Everything durable goes through [`Storage`] and [`StorageFile`]: positional reads and
//! writes, `set_len`, `sync_data`, and the directory operations whose durability needs
//! its own fsync (create, rename, unlink). Two implementations exist: [`FsStorage`] on
//! real files, and [`FaultStorage`], an in-memory double that remembers what has been
//! synced so tests can "pull the plug" at any operation.

mod fault;
mod fs;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use fault::{CrashMode, FaultStorage};
pub use fs::FsStorage;

/// A directory tree of files, as the log needs it.
///
/// Creating, renaming or removing a file changes the directory; that change is durable
/// only after [`Storage::sync_dir`] on the parent directory returns.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Opens a file for reading and writing. With `create`, a missing file is created empty.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the files directly inside `dir` (not sorted).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Names of the directories directly inside `dir` (not sorted).
    fn list_subdirs(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes `dir` and everything in it; durable after [`Storage::sync_dir`] on its parent.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open file: positional IO only, so there is no shared cursor to race on.
#[expect(clippy::len_without_is_empty, reason = "a fallible length; emptiness is never asked")]
pub trait StorageFile: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `pos`; fails with `UnexpectedEof` when the file is shorter.
    fn read_exact_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `pos`, growing the file if needed.
    fn write_all_at(&self, pos: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}
