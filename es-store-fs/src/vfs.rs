//! The file-system seam: the few operations the store performs, so that tests can run the
//! same code on a simulated disk that crashes, tears writes and fails fsync.

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

#[cfg(feature = "sim")]
pub mod sim;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// Create a file that must not exist yet, read and write, private to the owner.
    CreateNew,
    /// Open or create, read and write, private to the owner.
    CreateOrOpen,
    /// Create or truncate to empty, read and write, private to the owner.
    CreateTruncate,
}

/// An open file. Offsets are explicit, so one handle serves concurrent readers.
#[allow(clippy::len_without_is_empty)] // a file length, not a collection
pub trait VfsFile: Debug + Send + Sync {
    /// Reads at `offset`; returns how many bytes were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Takes an exclusive advisory lock without waiting; `Ok(false)` when another holder has
    /// it.
    fn try_lock(&self) -> io::Result<bool>;

    /// How many names (hard links) the file has; 1 where links do not exist.
    fn links(&self) -> io::Result<u64> {
        Ok(1)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, failing with `UnexpectedEof` when the
    /// file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A file system.
pub trait Vfs: Debug + Send + Sync {
    /// Creates a directory and its parents, private to the owner.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory inside the store's (as [`create_dir_all`](Vfs::create_dir_all)
    /// does), refusing a symbolic link in its place: nothing is written through a link.
    /// The default creates it, for file systems without links.
    fn create_store_dir(&self, path: &Path) -> io::Result<()> {
        self.create_dir_all(path)
    }
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    /// The names of the entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames atomically, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on the directory itself, held while the returned
    /// guard lives; `Ok(None)` when another holder has it. A directory cannot be deleted
    /// and recreated under a running writer the way a lock file can. The default holds
    /// nothing (a file system without directory locks relies on the lock file alone).
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        let _ = dir;
        Ok(Some(DirLock(Box::new(()))))
    }
    /// Whether paths name the same files for every instance in this process (the real
    /// file system), so that a store open in this process can be recognised by its path.
    /// A simulated disk is a world of its own.
    fn shared_by_the_process(&self) -> bool {
        false
    }
}

/// A held directory lock; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] Box<dyn Debug + Send + Sync>);

/// Replaces `path` with `bytes` atomically: a temporary file beside it (`<path>.tmp`)
/// written and synced, renamed over `path`, and the directory synced, so that a crash
/// leaves the old or the new content, never a mix.
pub(crate) fn write_atomically(
    vfs: &dyn Vfs,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // a temporary file left by a crash is the store's to replace; anything else in its
    // place is an error naming it. A new file, never one written through another name
    match vfs.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(named(&tmp, e)),
    }
    let file = vfs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| named(&tmp, e))?;
    if let Err(e) = file
        .write_all_at(bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| named(&tmp, e))
    {
        // a partial temporary file (a full disk) would keep its space until the next
        // write of `path`; it is never read as `path`
        drop(file);
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    drop(file);
    vfs.rename(&tmp, path).map_err(|e| named(path, e))?;
    vfs.sync_dir(dir).map_err(|e| named(dir, e))
}

/// `e` with the path it concerns, unless its message names it already.
fn named(path: &Path, e: io::Error) -> io::Error {
    let shown = path.display().to_string();
    if e.to_string().contains(&shown) {
        return e;
    }
    io::Error::new(e.kind(), format!("`{shown}`: {e}"))
}

/// Replaces `path` with `bytes` atomically like [`write_atomically`], for a file that
/// several writers may replace at once: each call writes its own temporary file beside
/// `path` (`<path>.<process id>-<sequence number>.tmp`, never an existing file), so
/// concurrent calls never write into one another's, and the last rename wins. A call
/// that fails removes its temporary file; a crash can leave one behind, which is never
/// read as `path`.
pub(crate) fn write_atomically_unique(
    vfs: &dyn Vfs,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// Numbers the temporary files of this process.
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    /// Names taken by leftovers of an earlier process with the same id are skipped; this
    /// bounds the search should creating fail this way for another reason.
    const ATTEMPTS: usize = 64;
    let mut attempt = 0;
    let (tmp, file) = loop {
        let mut tmp = path.as_os_str().to_owned();
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        tmp.push(format!(".{}-{sequence}.tmp", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        match vfs.open(&tmp, OpenMode::CreateNew) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let replaced = file
        .write_all_at(bytes, 0)
        .and_then(|()| file.sync_data())
        .and_then(|()| vfs.rename(&tmp, path));
    if let Err(e) = replaced {
        // Best effort: the error that matters is the one returned.
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    vfs.sync_dir(dir)
}

/// The real file system (Unix).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(std::fs::File);

#[cfg(unix)]
impl VfsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn try_lock(&self) -> io::Result<bool> {
        match self.0.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
    #[cfg(unix)]
    fn links(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.0.metadata()?.nlink())
    }
}

/// An error naming `path` when the file open there has other names (hard links).
#[cfg(unix)]
fn only_name(path: &Path, file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match file.metadata()?.nlink() {
        0 | 1 => Ok(()),
        links => Err(has_other_names(path, links)),
    }
}

/// An error naming `path` when `file`, which the store is to empty and write anew, has
/// other names (hard links).
pub(crate) fn refuse_other_names(file: &dyn VfsFile, path: &Path) -> io::Result<()> {
    match file.links()? {
        0 | 1 => Ok(()),
        links => Err(has_other_names(path, links)),
    }
}

/// The error of a file at `path` with `links` names, which the store was to write anew.
pub(crate) fn has_other_names(path: &Path, links: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} has {links} names (hard links), which the store never makes: refused, since \
             writing it anew would write the file of its other names too",
            path.display()
        ),
    )
}

/// `file` if it is a regular file, with the flag that kept its open from waiting cleared;
/// an error naming `path` and what it is otherwise.
#[cfg(unix)]
fn regular_file(path: &Path, file: std::fs::File) -> io::Result<std::fs::File> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::io::AsRawFd;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let (what, error_kind) = if kind.is_dir() {
            ("a directory", io::ErrorKind::IsADirectory)
        } else if kind.is_fifo() {
            ("a FIFO", io::ErrorKind::InvalidInput)
        } else if kind.is_socket() {
            ("a socket", io::ErrorKind::InvalidInput)
        } else {
            ("a device", io::ErrorKind::InvalidInput)
        };
        return Err(io::Error::new(
            error_kind,
            format!(
                "{} is {what}, not a file the store created: refused",
                path.display()
            ),
        ));
    }
    // of the status flags F_SETFL sets (append, async, direct, no-atime, non-blocking),
    // the open set only the last: clearing them all clears it, without reading them first
    // SAFETY: the descriptor is the open one `file` owns; F_SETFL sets its status flags
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(unix)]
impl Vfs for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut o = std::fs::OpenOptions::new();
        o.read(true).mode(0o600);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                o.write(true);
            }
            OpenMode::CreateNew => {
                o.write(true).create_new(true);
            }
            OpenMode::CreateOrOpen => {
                o.write(true).create(true);
            }
            OpenMode::CreateTruncate => {
                // truncated below, once the file is known to be the store's alone
                o.write(true).create(true);
            }
        }
        // every file of a store is one the store created: a symbolic link in its place
        // is refused (`ELOOP`) rather than followed, so that nothing the store writes or
        // truncates (its lock file, its records, a temporary file) lands on another file
        // A FIFO or a device in its place is refused too: opened without waiting (a FIFO
        // would block the open until some process wrote to it), then looked at.
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        o.open(path)
            .and_then(|f| regular_file(path, f))
            .and_then(|f| {
                // a file to be emptied and written anew (a new segment over a leftover)
                // must have no other name: a hard link in its place would have the store
                // write over another file, the user's or one of its own segments. (Files
                // written in place are looked at by their callers: `VfsFile::links`.)
                if mode == OpenMode::CreateTruncate {
                    only_name(path, &f)?;
                    f.set_len(0)?;
                }
                Ok(f)
            })
            .map(|f| Arc::new(StdFile(f)) as Arc<dyn VfsFile>)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "{} is a symbolic link, which the store never creates: refused",
                            path.display()
                        ),
                    )
                } else {
                    e
                }
            })
    }

    fn create_store_dir(&self, path: &Path) -> io::Result<()> {
        self.create_dir_all(path)?;
        if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link, which the store never creates: refused",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn shared_by_the_process(&self) -> bool {
        true
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        let file = std::fs::File::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DirLock(Box::new(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
