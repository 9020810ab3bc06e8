//! A replica's storage on this board: the core's [`MemMedia`] in RAM, mirrored to one
//! image file on the host through semihosting at every durable step, so that the log
//! survives a restart of the emulator.
//!
//! QEMU's `lm3s6965evb` has no flash a guest can program and keep, so the image file
//! stands in for it: the file is rewritten whole (to `PATH.tmp`, then renamed over
//! `PATH`, which the host does atomically) whenever the [`Media`] contract makes
//! something durable — `sync`, `truncate`, `install`, `write_snapshot`. A crash before
//! the rename leaves the previous image, which holds everything synced before it. On a
//! board with flash the same contract would be kept by an `embedded-storage` medium.
//!
//! Image format: records of `kind: u8` (0 segment, 1 snapshot), `seq: u64` LE,
//! `len: u32` LE, then `len` bytes. An image that ends early or names an unknown kind
//! is refused with [`ImageError`].

#![allow(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use concord_core::storage::{Media, MemMedia};
use cortex_m_semihosting::syscall;

/// Semihosting `open` modes.
const MODE_READ_BINARY: usize = 1;
const MODE_WRITE_BINARY: usize = 5;
/// Bytes moved per semihosting read or write.
const IO_CHUNK_BYTES: usize = 1024;
/// Largest image accepted on start, bytes: the board's RAM bounds it anyway.
pub const IMAGE_BYTES_MAX: usize = 48 * 1024;

const KIND_SEGMENT: u8 = 0;
const KIND_SNAPSHOT: u8 = 1;

/// Why the image could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// A semihosting call failed (the host's file system).
    Host(&'static str),
    /// The image is damaged: it ends inside a record or names an unknown kind.
    Damaged,
    /// The image is larger than [`IMAGE_BYTES_MAX`].
    TooLarge(usize),
}

/// [`MemMedia`] mirrored to a host file.
pub struct FileMirror {
    mem: MemMedia,
    /// NUL-terminated paths of the image and its temporary.
    path: Vec<u8>,
    tmp: Vec<u8>,
    /// Times the image was written.
    pub writes: u64,
}

fn c_path(s: &str) -> Vec<u8> {
    let mut v = Vec::from(s.as_bytes());
    v.push(0);
    v
}

/// A host file opened through semihosting, closed on drop.
struct HostFile(usize);

impl HostFile {
    fn open(path: &[u8], mode: usize) -> Option<Self> {
        // SAFETY: SYS_OPEN reads a NUL-terminated path of the given length (without NUL).
        let h = unsafe { syscall!(OPEN, path.as_ptr(), mode, path.len() - 1) };
        (h != usize::MAX).then_some(Self(h))
    }

    fn len(&self) -> Result<usize, ImageError> {
        // SAFETY: SYS_FLEN takes the handle.
        let n = unsafe { syscall!(FLEN, self.0) };
        if n == usize::MAX {
            return Err(ImageError::Host("flen"));
        }
        Ok(n)
    }

    fn read_exact(&self, buf: &mut [u8]) -> Result<(), ImageError> {
        for chunk in buf.chunks_mut(IO_CHUNK_BYTES) {
            // SAFETY: SYS_READ writes at most `len` bytes to the buffer; it returns the
            // bytes it did not read.
            let left = unsafe { syscall!(READ, self.0, chunk.as_mut_ptr(), chunk.len()) };
            if left != 0 {
                return Err(ImageError::Damaged);
            }
        }
        Ok(())
    }

    fn write_all(&self, bytes: &[u8]) -> Result<(), ImageError> {
        for chunk in bytes.chunks(IO_CHUNK_BYTES) {
            // SAFETY: SYS_WRITE reads `len` bytes from the buffer; it returns the bytes
            // it did not write.
            let left = unsafe { syscall!(WRITE, self.0, chunk.as_ptr(), chunk.len()) };
            if left != 0 {
                return Err(ImageError::Host("write"));
            }
        }
        Ok(())
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        // SAFETY: SYS_CLOSE takes the handle, which is not used again.
        unsafe { syscall!(CLOSE, self.0) };
    }
}

impl FileMirror {
    /// Loads the image at `path` (none yet: empty storage) into RAM.
    pub fn open(path: &str) -> Result<Self, ImageError> {
        let mut me = Self {
            mem: MemMedia::new(),
            path: c_path(path),
            tmp: c_path(&(String::from(path) + ".tmp")),
            writes: 0,
        };
        let Some(file) = HostFile::open(&me.path, MODE_READ_BINARY) else {
            return Ok(me);
        };
        let len = file.len()?;
        if len > IMAGE_BYTES_MAX {
            return Err(ImageError::TooLarge(len));
        }
        let mut image = alloc::vec![0u8; len];
        file.read_exact(&mut image)?;
        drop(file);
        let mut rest = &image[..];
        while !rest.is_empty() {
            let (&kind, tail) = rest.split_first().ok_or(ImageError::Damaged)?;
            let (seq, tail) = take::<8>(tail)?;
            let (n, tail) = take::<4>(tail)?;
            let n = u32::from_le_bytes(n) as usize;
            let bytes = tail.get(..n).ok_or(ImageError::Damaged)?;
            let seq = u64::from_le_bytes(seq);
            let stored = match kind {
                KIND_SEGMENT => me.mem.install(seq, bytes),
                KIND_SNAPSHOT => me.mem.write_snapshot(bytes),
                _ => return Err(ImageError::Damaged),
            };
            // MemMedia never fails.
            let Ok(()) = stored;
            rest = &tail[n..];
        }
        Ok(me)
    }

    /// Writes the whole image: to the temporary, then renamed over the image.
    fn persist(&mut self) -> Result<(), ImageError> {
        let file = HostFile::open(&self.tmp, MODE_WRITE_BINARY).ok_or(ImageError::Host("open"))?;
        let mut seqs = Vec::new();
        let Ok(()) = self.mem.segments(&mut seqs);
        let mut buf = Vec::new();
        for seq in seqs {
            let Ok(()) = self.mem.read(seq, &mut buf);
            write_record(&file, KIND_SEGMENT, seq, &buf)?;
        }
        if let Ok(true) = self.mem.read_snapshot(&mut buf) {
            write_record(&file, KIND_SNAPSHOT, 0, &buf)?;
        }
        drop(file);
        // SAFETY: SYS_REMOVE and SYS_RENAME read NUL-terminated paths of the given
        // lengths. Removing first: a host whose rename does not replace.
        let renamed = unsafe {
            syscall!(REMOVE, self.path.as_ptr(), self.path.len() - 1);
            syscall!(RENAME, self.tmp.as_ptr(), self.tmp.len() - 1, self.path.as_ptr(), self.path.len() - 1)
        };
        if renamed != 0 {
            return Err(ImageError::Host("rename"));
        }
        self.writes += 1;
        Ok(())
    }
}

fn take<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), ImageError> {
    let head = bytes.get(..N).ok_or(ImageError::Damaged)?;
    let mut out = [0u8; N];
    out.copy_from_slice(head);
    Ok((out, &bytes[N..]))
}

fn write_record(file: &HostFile, kind: u8, seq: u64, bytes: &[u8]) -> Result<(), ImageError> {
    let len = u32::try_from(bytes.len()).map_err(|_| ImageError::TooLarge(bytes.len()))?;
    file.write_all(&[kind])?;
    file.write_all(&seq.to_le_bytes())?;
    file.write_all(&len.to_le_bytes())?;
    file.write_all(bytes)
}

impl Media for FileMirror {
    type Error = ImageError;

    fn segments(&mut self, out: &mut Vec<u64>) -> Result<(), ImageError> {
        let Ok(()) = self.mem.segments(out);
        Ok(())
    }

    fn read(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<(), ImageError> {
        let Ok(()) = self.mem.read(seq, buf);
        Ok(())
    }

    fn create(&mut self, seq: u64) -> Result<(), ImageError> {
        let Ok(()) = self.mem.create(seq);
        Ok(())
    }

    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), ImageError> {
        let Ok(()) = self.mem.append(seq, bytes);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), ImageError> {
        let Ok(()) = self.mem.sync();
        self.persist()
    }

    fn truncate(&mut self, seq: u64, len: u64) -> Result<(), ImageError> {
        let Ok(()) = self.mem.truncate(seq, len);
        self.persist()
    }

    fn install(&mut self, seq: u64, bytes: &[u8]) -> Result<(), ImageError> {
        let Ok(()) = self.mem.install(seq, bytes);
        self.persist()
    }

    fn remove(&mut self, seq: u64) -> Result<(), ImageError> {
        let Ok(()) = self.mem.remove(seq);
        Ok(())
    }

    fn read_snapshot(&mut self, buf: &mut Vec<u8>) -> Result<bool, ImageError> {
        let Ok(found) = self.mem.read_snapshot(buf);
        Ok(found)
    }

    fn write_snapshot(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        let Ok(()) = self.mem.write_snapshot(bytes);
        self.persist()
    }
}
