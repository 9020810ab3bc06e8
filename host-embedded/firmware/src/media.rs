//! The replica's flash on this board: a NOR flash of [`FLASH_BYTES`] whose cells are a
//! file on the host, reached through semihosting, under the core's storage through
//! [`FlashMedia`](concord_embedded::flash::FlashMedia) — the same medium a board with
//! programmable flash would use over its flash driver.
//!
//! QEMU's `lm3s6965evb` and `mps2-an385` have no flash a guest can program and keep, so
//! the file stands in for the part: reads, programming and erasing go to it at the same
//! offsets, and the rules of NOR flash are kept (a word is programmed only when erased
//! — checked, so a medium that broke the rule would fail here as on a real part —,
//! erasing is per [`SECTOR_BYTES`] sector and leaves `0xFF`). What the file holds when
//! the emulator is killed is what the flash would hold after a power cut.

#![allow(unsafe_code)]

use alloc::vec::Vec;
use cortex_m_semihosting::syscall;
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

/// The flash's size, bytes: two banks of 32 KiB for the replica's log.
pub const FLASH_BYTES: usize = 64 * 1024;
/// Its erase sector, bytes.
pub const SECTOR_BYTES: usize = 1024;
/// Its program unit, bytes.
pub const WORD_BYTES: usize = 4;
/// Bytes moved per semihosting read or write.
const IO_CHUNK_BYTES: usize = 256;

/// Semihosting `open` modes: read and write an existing file, create a new one.
const MODE_READ_WRITE_BINARY: usize = 3;
const MODE_CREATE_READ_WRITE_BINARY: usize = 7;

/// Why the flash could not be read, programmed or erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFlashError {
    /// A semihosting call failed (the host's file system).
    Host(&'static str),
    /// The file is not a flash image of [`FLASH_BYTES`].
    Size(usize),
    /// A word was programmed that was not erased.
    NotErased(u32),
    /// An offset or length not aligned to the program or erase unit.
    NotAligned,
    /// Beyond the end of the flash.
    OutOfBounds,
}

impl NorFlashError for HostFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// The flash, over a host file opened through semihosting (closed on drop).
pub struct HostFlash {
    handle: usize,
}

impl HostFlash {
    /// Opens the flash image at `path`, or creates it erased when there is none (a new
    /// device).
    pub fn open(path: &str) -> Result<Self, HostFlashError> {
        let mut c_path = Vec::from(path.as_bytes());
        c_path.push(0);
        let open = |mode: usize| {
            // SAFETY: SYS_OPEN reads a NUL-terminated path of the given length (without NUL).
            let h = unsafe { syscall!(OPEN, c_path.as_ptr(), mode, c_path.len() - 1) };
            (h != usize::MAX).then_some(Self { handle: h })
        };
        if let Some(flash) = open(MODE_READ_WRITE_BINARY) {
            // SAFETY: SYS_FLEN takes the handle.
            let len = unsafe { syscall!(FLEN, flash.handle) };
            return if len == FLASH_BYTES { Ok(flash) } else { Err(HostFlashError::Size(len)) };
        }
        let mut flash = open(MODE_CREATE_READ_WRITE_BINARY).ok_or(HostFlashError::Host("open"))?;
        flash.fill(0, FLASH_BYTES, 0xFF)?;
        Ok(flash)
    }

    fn seek(&self, offset: usize) -> Result<(), HostFlashError> {
        // SAFETY: SYS_SEEK takes the handle and an absolute position.
        let r = unsafe { syscall!(SEEK, self.handle, offset) };
        if r == 0 {
            Ok(())
        } else {
            Err(HostFlashError::Host("seek"))
        }
    }

    fn put(&mut self, offset: usize, bytes: &[u8]) -> Result<(), HostFlashError> {
        self.seek(offset)?;
        for chunk in bytes.chunks(IO_CHUNK_BYTES) {
            // SAFETY: SYS_WRITE reads `len` bytes from the buffer; it returns the bytes
            // it did not write.
            let left = unsafe { syscall!(WRITE, self.handle, chunk.as_ptr(), chunk.len()) };
            if left != 0 {
                return Err(HostFlashError::Host("write"));
            }
        }
        Ok(())
    }

    fn fill(&mut self, offset: usize, len: usize, byte: u8) -> Result<(), HostFlashError> {
        let chunk = [byte; IO_CHUNK_BYTES];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(IO_CHUNK_BYTES);
            self.put(at, &chunk[..n])?;
            at += n;
        }
        Ok(())
    }

    fn check(offset: u32, len: usize, unit: usize) -> Result<usize, HostFlashError> {
        let at = offset as usize;
        if at % unit != 0 || len % unit != 0 {
            return Err(HostFlashError::NotAligned);
        }
        if at + len > FLASH_BYTES {
            return Err(HostFlashError::OutOfBounds);
        }
        Ok(at)
    }
}

impl Drop for HostFlash {
    fn drop(&mut self) {
        // SAFETY: SYS_CLOSE takes the handle, which is not used again.
        unsafe { syscall!(CLOSE, self.handle) };
    }
}

impl ErrorType for HostFlash {
    type Error = HostFlashError;
}

impl ReadNorFlash for HostFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), HostFlashError> {
        let at = Self::check(offset, bytes.len(), 1)?;
        self.seek(at)?;
        for chunk in bytes.chunks_mut(IO_CHUNK_BYTES) {
            // SAFETY: SYS_READ writes at most `len` bytes to the buffer; it returns the
            // bytes it did not read.
            let left = unsafe { syscall!(READ, self.handle, chunk.as_mut_ptr(), chunk.len()) };
            if left != 0 {
                return Err(HostFlashError::Host("read"));
            }
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        FLASH_BYTES
    }
}

impl NorFlash for HostFlash {
    const WRITE_SIZE: usize = WORD_BYTES;
    const ERASE_SIZE: usize = SECTOR_BYTES;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), HostFlashError> {
        let len = (to as usize).checked_sub(from as usize).ok_or(HostFlashError::OutOfBounds)?;
        let at = Self::check(from, len, SECTOR_BYTES)?;
        self.fill(at, len, 0xFF)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), HostFlashError> {
        let at = Self::check(offset, bytes.len(), WORD_BYTES)?;
        let mut now = alloc::vec![0u8; bytes.len()];
        self.read(offset, &mut now)?;
        if let Some(i) = now.iter().position(|b| *b != 0xFF) {
            return Err(HostFlashError::NotErased(offset + i as u32));
        }
        self.put(at, bytes)
    }
}
