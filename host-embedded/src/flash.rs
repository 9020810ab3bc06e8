//! A replica's storage on NOR flash, through the [`embedded_storage`] traits a board's
//! flash driver implements: [`FlashMedia`], the core's [`Media`] over a flash region.
//!
//! The core's [`LogStore`](concord_core::storage::LogStore) decides the log's format and
//! recovery; this medium only has to keep the [`Media`] contract on a device that can
//! set bits to 0 by programming and back to 1 only by erasing whole sectors:
//!
//! - The region is split into two **banks** of whole erase sectors. One is active: a
//!   header (magic, generation, CRC) then a **journal** of records, each a batch of
//!   medium operations (create, append, truncate, install, remove, snapshot) with its
//!   own length and CRC-32, padded to the flash's write size.
//! - Operations are applied to a copy in RAM (which serves reads) and collected in a
//!   batch; [`Media::sync`], and the operations the contract makes durable at once
//!   (`truncate`, `install`, `write_snapshot`), program the batch as one record. A record
//!   is all or nothing: a write cut by a power failure fails its CRC and is ignored at the
//!   next start, with everything after it.
//! - When a record does not fit, the medium **compacts**: it erases the other bank,
//!   writes the whole state there as one record, and programs that bank's header with
//!   the next generation last. Until the header is written the old bank stays the one
//!   read at start, so a power failure during compaction loses nothing that was durable.
//! - At start the valid header with the highest generation wins and its journal is
//!   replayed up to the first erased or damaged record. If anything but erased flash
//!   follows (a record cut mid-write), the state is compacted to the other bank at once,
//!   so no byte is ever programmed twice without an erase.
//!
//! Wear: a compaction erases one bank; records are programmed into erased flash only.
//! RAM: the live state is held in RAM, as with [`MemMedia`] (a device replica snapshots
//! often to keep its log small), plus one record's buffer while it is written.

use alloc::vec::Vec;
use concord_core::storage::{Media, MemMedia};
use core::fmt;
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

/// Bank header: magic, generation, bank size, CRC-32 of the first 12 bytes.
const HEADER_BYTES: usize = 16;
/// What a valid bank header starts with.
const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"CCFL");
/// Record header: marker, three zero bytes, payload length, CRC-32 of the payload.
const RECORD_HEADER_BYTES: usize = 12;
/// The first byte of every record; erased flash reads `0xFF` and ends the journal.
const RECORD_MARKER: u8 = 0xA5;
/// Operation header: tag, segment number, payload length.
const OP_HEADER_BYTES: usize = 13;

const OP_CREATE: u8 = 1;
const OP_APPEND: u8 = 2;
const OP_TRUNCATE: u8 = 3;
const OP_INSTALL: u8 = 4;
const OP_REMOVE: u8 = 5;
const OP_SNAPSHOT: u8 = 6;

/// Why the flash medium failed.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlashMediaError<E> {
    /// The flash driver failed.
    Flash(E),
    /// The region cannot hold two banks of whole erase sectors (or is not aligned to
    /// them, or its banks are too small for a header).
    Geometry {
        /// The region's size, bytes.
        region_bytes: u32,
        /// The flash's erase sector, bytes.
        erase_bytes: u32,
    },
    /// The state does not fit one bank, even compacted.
    Full {
        /// Bytes the state needs.
        needed: usize,
        /// Bytes a bank holds.
        bank_bytes: u32,
    },
    /// A record passed its CRC but holds an operation this medium does not write.
    Damaged {
        /// Where the record starts in the region.
        offset: u32,
    },
}

impl<E: fmt::Debug> fmt::Display for FlashMediaError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flash(e) => write!(f, "flash: {e:?}"),
            Self::Geometry { region_bytes, erase_bytes } => write!(
                f,
                "a region of {region_bytes} bytes cannot hold two banks of whole {erase_bytes}-byte sectors"
            ),
            Self::Full { needed, bank_bytes } => {
                write!(f, "the state needs {needed} bytes; a bank holds {bank_bytes}")
            }
            Self::Damaged { offset } => write!(f, "a damaged record at offset {offset}"),
        }
    }
}

/// What the medium counted since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlashMediaStats {
    /// The active bank (0 or 1) and its generation.
    pub bank: u8,
    /// Compactions since the region was formatted.
    pub generation: u32,
    /// Records programmed.
    pub records: u64,
    /// Compactions (each erases one bank).
    pub compactions: u64,
    /// Bytes of the active bank in use.
    pub used_bytes: u32,
}

/// The core's [`Media`] on a NOR flash region (see the module docs for the layout and
/// what survives a power failure).
pub struct FlashMedia<F> {
    flash: F,
    /// The region: `start..start + 2 * bank_bytes`.
    start: u32,
    bank_bytes: u32,
    state: MemMedia,
    /// Operations applied to `state` and not yet programmed.
    batch: Vec<u8>,
    /// Where the next record goes in the active bank.
    tail: u32,
    stats: FlashMediaStats,
}

fn crc(bytes: &[u8]) -> u32 {
    concord_core::crc::crc32(bytes)
}

fn align_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

fn push_op(out: &mut Vec<u8>, tag: u8, seq: u64, payload: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Applies a record's operations to `state`; `false` if they do not parse.
fn replay(state: &mut MemMedia, mut ops: &[u8]) -> bool {
    while !ops.is_empty() {
        let Some((head, rest)) = ops.split_at_checked(OP_HEADER_BYTES) else { return false };
        let tag = head[0];
        let seq = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(head[9..13].try_into().unwrap_or_default()) as usize;
        let Some((payload, rest)) = rest.split_at_checked(len) else { return false };
        // MemMedia never fails.
        let _ = match tag {
            OP_CREATE => state.create(seq),
            OP_APPEND => state.append(seq, payload),
            OP_TRUNCATE => match payload.try_into() {
                Ok(len) => state.truncate(seq, u64::from_le_bytes(len)),
                Err(_) => return false,
            },
            OP_INSTALL => state.install(seq, payload),
            OP_REMOVE => state.remove(seq),
            OP_SNAPSHOT => state.write_snapshot(payload),
            _ => return false,
        };
        ops = rest;
    }
    true
}

impl<F: NorFlash> FlashMedia<F> {
    /// Opens the medium on `flash` bytes `start..start + len`, recovering what it holds,
    /// or formatting it when neither bank has a valid header (a new device). `start`
    /// and `len / 2` must be multiples of the flash's erase size. A region whose valid
    /// header records another size is refused with [`FlashMediaError::Geometry`], never
    /// formatted.
    pub fn open(mut flash: F, start: u32, len: u32) -> Result<Self, FlashMediaError<F::Error>> {
        let erase = F::ERASE_SIZE as u32;
        let bank_bytes = len / 2 / erase * erase;
        let least = align_up(HEADER_BYTES, F::WRITE_SIZE) + align_up(RECORD_HEADER_BYTES, F::WRITE_SIZE);
        if bank_bytes == 0
            || start % erase != 0
            || (bank_bytes as usize) < least
            || u64::from(start) + 2 * u64::from(bank_bytes) > flash.capacity() as u64
        {
            return Err(FlashMediaError::Geometry { region_bytes: len, erase_bytes: erase });
        }
        let mut headers = [None, None];
        for (bank, slot) in headers.iter_mut().enumerate() {
            let at = start + bank as u32 * bank_bytes;
            let mut h = [0u8; HEADER_BYTES];
            read(&mut flash, at, &mut h)?;
            let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
            if word(0) != HEADER_MAGIC || word(12) != crc(&h[..12]) {
                continue;
            }
            if word(8) != bank_bytes {
                // A medium written with another region size: formatting it would erase a
                // replica's log and vote, so it is refused.
                return Err(FlashMediaError::Geometry { region_bytes: len, erase_bytes: erase });
            }
            *slot = Some(word(4));
        }
        let mut media = Self {
            flash,
            start,
            bank_bytes,
            state: MemMedia::new(),
            batch: Vec::new(),
            tail: 0,
            stats: FlashMediaStats::default(),
        };
        let active = match headers {
            [Some(a), Some(b)] => Some(if b > a { (1, b) } else { (0, a) }),
            [Some(a), None] => Some((0, a)),
            [None, Some(b)] => Some((1, b)),
            [None, None] => None,
        };
        let Some((bank, generation)) = active else {
            // A new device: an empty state in bank 0, generation 1.
            media.stats.bank = 1;
            media.compact()?;
            return Ok(media);
        };
        media.stats.bank = bank;
        media.stats.generation = generation;
        let clean = media.recover()?;
        media.state.sync().ok();
        if !clean {
            // A record was cut mid-write: its bytes cannot be programmed again until the
            // bank is erased, so the state moves to the other bank now.
            media.compact()?;
        }
        Ok(media)
    }

    /// What the medium counted.
    pub fn stats(&self) -> FlashMediaStats {
        FlashMediaStats { used_bytes: self.tail, ..self.stats }
    }

    /// Hands the flash back (after everything was synced: a restart opens it again).
    pub fn into_flash(self) -> F {
        self.flash
    }

    fn bank_start(&self, bank: u8) -> u32 {
        self.start + u32::from(bank) * self.bank_bytes
    }

    fn records_start() -> u32 {
        align_up(HEADER_BYTES, F::WRITE_SIZE) as u32
    }

    /// Replays the active bank's journal into `state`; whether only erased flash
    /// follows its last record.
    fn recover(&mut self) -> Result<bool, FlashMediaError<F::Error>> {
        let base = self.bank_start(self.stats.bank);
        let mut at = Self::records_start();
        loop {
            let mut h = [0u8; RECORD_HEADER_BYTES];
            if u64::from(at) + RECORD_HEADER_BYTES as u64 > u64::from(self.bank_bytes) {
                self.tail = at;
                return Ok(true);
            }
            read(&mut self.flash, base + at, &mut h)?;
            let stored_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let stored = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
            // In u64: a length torn mid-write (0xFFFF_FFFF, say) must not wrap on a
            // 32-bit device into a record that seems to fit.
            let write = F::WRITE_SIZE.max(1) as u64;
            let size = (RECORD_HEADER_BYTES as u64 + u64::from(stored_len)).div_ceil(write) * write;
            let fits = u64::from(at) + size <= u64::from(self.bank_bytes);
            if h[0] != RECORD_MARKER || h[1..4] != [0, 0, 0] || !fits {
                self.tail = at;
                return self.erased_from(at);
            }
            // It fits the bank, so both fit in u32 and usize.
            let (len, size) = (stored_len as usize, size as u32);
            let mut payload = alloc::vec![0u8; len];
            read(&mut self.flash, base + at + RECORD_HEADER_BYTES as u32, &mut payload)?;
            if crc(&payload) != stored {
                self.tail = at;
                return Ok(false);
            }
            if !replay(&mut self.state, &payload) {
                return Err(FlashMediaError::Damaged { offset: base + at });
            }
            at += size;
        }
    }

    /// Whether the active bank holds only erased bytes from `at` on.
    fn erased_from(&mut self, at: u32) -> Result<bool, FlashMediaError<F::Error>> {
        let base = self.bank_start(self.stats.bank);
        let mut chunk = [0u8; 64];
        let mut pos = at;
        while pos < self.bank_bytes {
            let n = (self.bank_bytes - pos).min(chunk.len() as u32) as usize;
            read(&mut self.flash, base + pos, &mut chunk[..n])?;
            if chunk[..n].iter().any(|b| *b != 0xFF) {
                return Ok(false);
            }
            pos += n as u32;
        }
        Ok(true)
    }

    /// Programs the batch as one record, compacting when it does not fit.
    fn flush(&mut self) -> Result<(), FlashMediaError<F::Error>> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let record = record(&self.batch, F::WRITE_SIZE);
        if u64::from(self.tail) + record.len() as u64 > u64::from(self.bank_bytes) {
            // The whole state, the batch included, goes to the other bank.
            return self.compact();
        }
        let at = self.bank_start(self.stats.bank) + self.tail;
        if let Err(e) = self.flash.write(at, &record) {
            // Some of those bytes may be programmed: the next flush compacts onto an
            // erased bank rather than program them again.
            self.tail = self.bank_bytes;
            return Err(FlashMediaError::Flash(e));
        }
        self.tail += record.len() as u32;
        self.stats.records += 1;
        self.batch.clear();
        Ok(())
    }

    /// Writes the whole state to the other bank and makes it the active one.
    fn compact(&mut self) -> Result<(), FlashMediaError<F::Error>> {
        let mut ops = Vec::new();
        let mut buf = Vec::new();
        // MemMedia never fails.
        if self.state.read_snapshot(&mut buf).unwrap_or(false) {
            push_op(&mut ops, OP_SNAPSHOT, 0, &buf);
        }
        let mut seqs = Vec::new();
        let _ = self.state.segments(&mut seqs);
        for seq in seqs {
            let _ = self.state.read(seq, &mut buf);
            push_op(&mut ops, OP_INSTALL, seq, &buf);
        }
        let record = if ops.is_empty() { Vec::new() } else { record(&ops, F::WRITE_SIZE) };
        let needed = Self::records_start() as usize + record.len();
        if needed > self.bank_bytes as usize {
            return Err(FlashMediaError::Full { needed, bank_bytes: self.bank_bytes });
        }
        let bank = 1 - self.stats.bank;
        let base = self.bank_start(bank);
        self.flash.erase(base, base + self.bank_bytes).map_err(FlashMediaError::Flash)?;
        let records_at = base + Self::records_start();
        if !record.is_empty() {
            self.flash.write(records_at, &record).map_err(FlashMediaError::Flash)?;
        }
        // The header last: until it is written, the old bank is the one read at start.
        let generation = self.stats.generation.wrapping_add(1);
        let mut header = Vec::with_capacity(Self::records_start() as usize);
        header.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
        header.extend_from_slice(&generation.to_le_bytes());
        header.extend_from_slice(&self.bank_bytes.to_le_bytes());
        let sum = crc(&header);
        header.extend_from_slice(&sum.to_le_bytes());
        header.resize(Self::records_start() as usize, 0xFF);
        self.flash.write(base, &header).map_err(FlashMediaError::Flash)?;
        self.stats.bank = bank;
        self.stats.generation = generation;
        self.stats.compactions += 1;
        self.tail = Self::records_start() + record.len() as u32;
        self.batch.clear();
        Ok(())
    }
}

/// A record holding `ops`, padded with erased bytes to a multiple of `write`.
fn record(ops: &[u8], write: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(align_up(RECORD_HEADER_BYTES + ops.len(), write));
    r.extend_from_slice(&[RECORD_MARKER, 0, 0, 0]);
    r.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc(ops).to_le_bytes());
    r.extend_from_slice(ops);
    r.resize(align_up(r.len(), write), 0xFF);
    r
}

/// Reads `out.len()` bytes at `at`, whatever the flash's read alignment.
fn read<F: ReadNorFlash>(flash: &mut F, at: u32, out: &mut [u8]) -> Result<(), FlashMediaError<F::Error>> {
    let unit = F::READ_SIZE.max(1) as u32;
    let (from, to) = (at / unit * unit, (at + out.len() as u32).div_ceil(unit) * unit);
    if from == at && to == at + out.len() as u32 {
        return flash.read(at, out).map_err(FlashMediaError::Flash);
    }
    let mut buf = alloc::vec![0u8; (to - from) as usize];
    flash.read(from, &mut buf).map_err(FlashMediaError::Flash)?;
    let skip = (at - from) as usize;
    out.copy_from_slice(&buf[skip..skip + out.len()]);
    Ok(())
}

impl<F: NorFlash> Media for FlashMedia<F> {
    type Error = FlashMediaError<F::Error>;

    fn segments(&mut self, out: &mut Vec<u64>) -> Result<(), Self::Error> {
        let _ = self.state.segments(out);
        Ok(())
    }

    fn read(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<(), Self::Error> {
        let _ = self.state.read(seq, buf);
        Ok(())
    }

    fn create(&mut self, seq: u64) -> Result<(), Self::Error> {
        let _ = self.state.create(seq);
        push_op(&mut self.batch, OP_CREATE, seq, &[]);
        Ok(())
    }

    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Self::Error> {
        let _ = self.state.append(seq, bytes);
        push_op(&mut self.batch, OP_APPEND, seq, bytes);
        // A batch larger than a bank is programmed early (durable sooner is allowed).
        if self.batch.len() > self.bank_bytes as usize / 2 {
            self.flush()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.flush()?;
        let _ = self.state.sync();
        Ok(())
    }

    fn truncate(&mut self, seq: u64, len: u64) -> Result<(), Self::Error> {
        let _ = self.state.truncate(seq, len);
        push_op(&mut self.batch, OP_TRUNCATE, seq, &len.to_le_bytes());
        self.flush()
    }

    fn install(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Self::Error> {
        let _ = self.state.install(seq, bytes);
        push_op(&mut self.batch, OP_INSTALL, seq, bytes);
        self.flush()
    }

    fn remove(&mut self, seq: u64) -> Result<(), Self::Error> {
        let _ = self.state.remove(seq);
        push_op(&mut self.batch, OP_REMOVE, seq, &[]);
        Ok(())
    }

    fn read_snapshot(&mut self, buf: &mut Vec<u8>) -> Result<bool, Self::Error> {
        Ok(self.state.read_snapshot(buf).unwrap_or(false))
    }

    fn write_snapshot(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        let _ = self.state.write_snapshot(bytes);
        push_op(&mut self.batch, OP_SNAPSHOT, 0, bytes);
        self.flush()
    }
}
