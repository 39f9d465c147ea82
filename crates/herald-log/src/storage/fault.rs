//! [`FaultStorage`]: an in-memory [`Storage`] that knows what a power loss would keep.
//!
//! Each file keeps two images: `live` (what reads see now) and `durable` (its contents at
//! the last `sync_data`), plus the list of writes since that sync. Directory entries are
//! likewise live or durable: a create, rename or unlink survives a crash only after
//! `sync_dir` on its parent. [`FaultStorage::crash`] replaces the live state with what
//! would survive: the durable image, and optionally a random prefix of the unsynced
//! writes with the last one torn at 512-byte sector boundaries.
//!
//! Faults are seeded and deterministic: a crash at the n-th mutating operation (every
//! call after it fails, like a dead disk), EIO on the n-th write or sync, and ENOSPC
//! beyond a byte budget (the write stores what fits, then fails, as a real short write).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Storage, StorageFile};

const SECTOR_BYTES: u64 = 512;
const EIO: i32 = 5;

/// What a simulated crash keeps of the writes that were never synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// A random prefix of each file's unsynced writes survives, the last of them torn:
    /// only a random subset of its 512-byte sectors reaches the disk.
    TearUnsynced,
}

/// Seeded, fault-injecting in-memory storage. Cloning shares the same "disk".
#[derive(Debug, Clone)]
pub struct FaultStorage {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    rng: SplitMix64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    live_files: BTreeMap<PathBuf, u64>,
    durable_files: BTreeMap<PathBuf, u64>,
    live_dirs: BTreeSet<PathBuf>,
    durable_dirs: BTreeSet<PathBuf>,
    mutating_ops: u64,
    crash_at_op: Option<u64>,
    crashed: bool,
    writes: u64,
    syncs: u64,
    fail_write: Option<u64>,
    fail_sync: Option<u64>,
    space_limit_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<PendingOp>,
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { pos: u64, data: Vec<u8> },
    SetLen(u64),
}

impl FaultStorage {
    /// An empty disk whose random choices (tearing) follow `seed`.
    pub fn new(seed: u64) -> Self {
        let state = State {
            rng: SplitMix64(seed),
            next_inode: 1,
            inodes: HashMap::new(),
            live_files: BTreeMap::new(),
            durable_files: BTreeMap::new(),
            live_dirs: BTreeSet::new(),
            durable_dirs: BTreeSet::new(),
            mutating_ops: 0,
            crash_at_op: None,
            crashed: false,
            writes: 0,
            syncs: 0,
            fail_write: None,
            fail_sync: None,
            space_limit_bytes: None,
        };
        let storage = Self { state: Arc::new(Mutex::new(state)) };
        {
            let mut s = storage.lock();
            // The root exists before anything runs, durably.
            s.live_dirs.insert(PathBuf::from("/"));
            s.durable_dirs.insert(PathBuf::from("/"));
        }
        storage
    }

    /// Mutating operations (write, set_len, sync, create, rename, remove, sync_dir) so far.
    pub fn mutating_ops(&self) -> u64 {
        self.lock().mutating_ops
    }

    /// The `op`-th mutating operation (counted from the start, 1-based) and everything after
    /// it fails, as if the machine lost power right there. Call [`Self::crash`] to reboot.
    pub fn crash_at_op(&self, op: u64) {
        self.lock().crash_at_op = Some(op);
    }

    /// True once a planned crash point has been reached.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The `n`-th write from now (1-based) fails with EIO and stores nothing.
    pub fn fail_nth_write(&self, n: u64) {
        let mut s = self.lock();
        s.fail_write = Some(s.writes + n);
    }

    /// The `n`-th `sync_data` from now (1-based) fails with EIO. Like Linux after a
    /// writeback error, the unsynced data is then neither durable nor retried.
    pub fn fail_nth_sync(&self, n: u64) {
        let mut s = self.lock();
        s.fail_sync = Some(s.syncs + n);
    }

    /// Total bytes the files may hold; growing past it fails with ENOSPC.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.lock().space_limit_bytes = bytes;
    }

    /// Simulates power loss and reboot: every file and directory entry falls back to what
    /// was durable (see [`CrashMode`]), and planned faults are cleared.
    pub fn crash(&self, mode: CrashMode) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut inode_ids: Vec<u64> = s.inodes.keys().copied().collect();
        inode_ids.sort_unstable();
        for id in inode_ids {
            let inode = s.inodes.get_mut(&id).expect("listed inode exists");
            let mut image = std::mem::take(&mut inode.durable);
            if mode == CrashMode::TearUnsynced && !inode.unsynced.is_empty() {
                let kept = s.rng.below(inode.unsynced.len() as u64 + 1) as usize;
                for (i, op) in inode.unsynced.iter().take(kept).enumerate() {
                    let torn = i + 1 == kept;
                    apply_after_crash(&mut image, op, torn, &mut s.rng);
                }
            }
            inode.live.clone_from(&image);
            inode.durable = image;
            inode.unsynced.clear();
        }
        let durable_dirs = s.durable_dirs.clone();
        let created = s.live_dirs.union(&s.durable_dirs).cloned().collect::<BTreeSet<_>>();
        let survives =
            |path: &Path| path.ancestors().skip(1).all(|dir| !created.contains(dir) || durable_dirs.contains(dir));
        s.durable_files.retain(|path, _| survives(path));
        s.durable_dirs = durable_dirs.iter().filter(|d| survives(d)).cloned().collect();
        s.live_files = s.durable_files.clone();
        s.live_dirs = s.durable_dirs.clone();
        let referenced: BTreeSet<u64> = s.live_files.values().copied().collect();
        s.inodes.retain(|id, _| referenced.contains(id));
        s.crash_at_op = None;
        s.crashed = false;
        s.fail_sync = None;
        s.fail_write = None;
    }

    /// The live contents of a file, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        let id = s.live_files.get(path)?;
        Some(s.inodes[id].live.clone())
    }

    /// Flips bits in both the live and durable image, as media corruption would.
    pub fn corrupt(&self, path: &Path, pos: u64, xor_mask: u8) {
        let mut s = self.lock();
        let id = s.live_files[path];
        let inode = s.inodes.get_mut(&id).expect("live file has an inode");
        for image in [&mut inode.live, &mut inode.durable] {
            if let Some(byte) = image.get_mut(pos as usize) {
                *byte ^= xor_mask;
            }
        }
    }

    /// Truncates a file's live and durable image to `len`, as a torn tail would.
    pub fn cut(&self, path: &Path, len: u64) {
        let mut s = self.lock();
        let id = s.live_files[path];
        let inode = s.inodes.get_mut(&id).expect("live file has an inode");
        inode.live.truncate(len as usize);
        inode.durable.truncate(len as usize);
    }

    /// Live file paths, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().live_files.keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the disk from the checks that follow.
        crate::sync::lock(&self.state)
    }
}

fn apply_after_crash(image: &mut Vec<u8>, op: &PendingOp, torn: bool, rng: &mut SplitMix64) {
    match op {
        PendingOp::SetLen(len) => image.resize(*len as usize, 0),
        PendingOp::Write { pos, data } if torn => {
            // Persist a random subset of the sectors this write touched.
            let end = pos + data.len() as u64;
            let mut sector = pos - pos % SECTOR_BYTES;
            while sector < end {
                let from = sector.max(*pos);
                let to = (sector + SECTOR_BYTES).min(end);
                if rng.below(2) == 1 {
                    write_into(image, from, &data[(from - pos) as usize..(to - pos) as usize]);
                }
                sector += SECTOR_BYTES;
            }
        }
        PendingOp::Write { pos, data } => write_into(image, *pos, data),
    }
}

fn write_into(image: &mut Vec<u8>, pos: u64, data: &[u8]) {
    let end = pos as usize + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[pos as usize..end].copy_from_slice(data);
}

impl State {
    /// Counts a mutating operation and fails it if the disk has "lost power".
    fn mutate(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crashed());
        }
        self.mutating_ops += 1;
        if self.crash_at_op.is_some_and(|at| self.mutating_ops >= at) {
            self.crashed = true;
            return Err(crashed());
        }
        Ok(())
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.crashed { Err(crashed()) } else { Ok(()) }
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.live.len() as u64).sum()
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.live_files.get(path).copied().ok_or_else(|| not_found(path))
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated power loss: the disk is gone until reboot")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl Storage for FaultStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut s = self.lock();
        s.check_alive()?;
        let inode = match s.live_files.get(path) {
            Some(id) => *id,
            None if create => {
                if !s.live_dirs.contains(&parent_of(path)) {
                    return Err(not_found(&parent_of(path)));
                }
                s.mutate()?;
                let id = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(id, Inode::default());
                s.live_files.insert(path.to_path_buf(), id);
                id
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(FaultFile { state: Arc::clone(&self.state), inode }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.inode_of(path)?;
        s.mutate()?;
        s.live_files.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let id = s.inode_of(from)?;
        s.mutate()?;
        s.live_files.remove(from);
        s.live_files.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        s.check_alive()?;
        if !s.live_dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(s.live_files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn list_subdirs(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        s.check_alive()?;
        if !s.live_dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(s.live_dirs
            .iter()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.check_alive()?;
        if !s.live_dirs.contains(dir) {
            return Err(not_found(dir));
        }
        s.mutate()?;
        s.live_files.retain(|p, _| !p.starts_with(dir));
        s.live_dirs.retain(|p| !p.starts_with(dir));
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.check_alive()?;
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|d| !d.as_os_str().is_empty() && !s.live_dirs.contains(*d))
            .map(Path::to_path_buf)
            .collect();
        if !missing.is_empty() {
            s.mutate()?;
            s.live_dirs.extend(missing);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        let in_dir = |p: &Path| p.parent() == Some(dir);
        let State { live_files, durable_files, live_dirs, durable_dirs, .. } = &mut *s;
        durable_files.retain(|p, _| !in_dir(p));
        durable_files.extend(live_files.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)));
        durable_dirs.retain(|p| !in_dir(p));
        durable_dirs.extend(live_dirs.iter().filter(|p| in_dir(p)).cloned());
        Ok(())
    }
}

#[derive(Debug)]
struct FaultFile {
    state: Arc<Mutex<State>>,
    inode: u64,
}

impl FaultFile {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

impl StorageFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        let s = self.lock();
        s.check_alive()?;
        Ok(s.inodes.get(&self.inode).map_or(0, |i| i.live.len() as u64))
    }

    fn read_exact_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = self.lock();
        s.check_alive()?;
        let live = s.inodes.get(&self.inode).map(|i| &i.live[..]).unwrap_or_default();
        let end = pos.checked_add(buf.len() as u64).filter(|end| *end <= live.len() as u64);
        let Some(end) = end else {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"));
        };
        buf.copy_from_slice(&live[pos as usize..end as usize]);
        Ok(())
    }

    fn write_all_at(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.mutate()?;
        s.writes += 1;
        if s.fail_write == Some(s.writes) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let current_len = s.inodes.get(&self.inode).map_or(0, |i| i.live.len() as u64);
        let growth = (pos + data.len() as u64).saturating_sub(current_len);
        let mut fits = data.len();
        let mut out_of_space = false;
        if let Some(limit) = s.space_limit_bytes {
            let free = limit.saturating_sub(s.used_bytes());
            if growth > free {
                out_of_space = true;
                fits = (current_len + free).saturating_sub(pos).min(data.len() as u64) as usize;
            }
        }
        let inode = s.inodes.entry(self.inode).or_default();
        write_into(&mut inode.live, pos, &data[..fits]);
        inode.unsynced.push(PendingOp::Write { pos, data: data[..fits].to_vec() });
        if out_of_space {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        let inode = s.inodes.entry(self.inode).or_default();
        inode.live.resize(len as usize, 0);
        inode.unsynced.push(PendingOp::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.mutate()?;
        s.syncs += 1;
        let inode = s.inodes.entry(self.inode).or_default();
        if s.fail_sync == Some(s.syncs) {
            // fsyncgate: the kernel drops the dirty pages' error state; the data never
            // becomes durable, and a retry would wrongly report success.
            inode.unsynced.clear();
            return Err(io::Error::from_raw_os_error(EIO));
        }
        inode.durable.clone_from(&inode.live);
        inode.unsynced.clear();
        Ok(())
    }
}

/// A tiny deterministic generator (SplitMix64); good enough to pick crash outcomes.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
