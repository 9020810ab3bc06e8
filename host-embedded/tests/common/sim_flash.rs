//! NOR flash in memory, with the rules real parts keep and power cuts at a chosen byte.

use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use std::cell::RefCell;
use std::rc::Rc;

pub const SECTOR: usize = 1024;
pub const WORD: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    PowerCut,
    NotErased(usize),
    Misaligned,
    OutOfBounds,
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Misaligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// NOR flash in memory: words programmed only when erased, sectors erased whole, and
/// power lost after `budget` more bytes programmed or erased (the write or erase in
/// progress stops half way). [`SimFlash::share`] gives another handle on the same cells,
/// so a test keeps the part when a medium that owns one fails.
pub struct SimFlash {
    pub bytes: Rc<RefCell<Vec<u8>>>,
    pub budget: Option<usize>,
    pub erases: usize,
}

impl SimFlash {
    pub fn new(sectors: usize) -> Self {
        Self { bytes: Rc::new(RefCell::new(vec![0xFF; sectors * SECTOR])), budget: None, erases: 0 }
    }

    /// The same cells, with power and no budget.
    pub fn share(&self) -> Self {
        Self { bytes: self.bytes.clone(), budget: None, erases: 0 }
    }

    /// Spends one byte of the budget; `false` when the power is gone.
    fn spend(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

impl ErrorType for SimFlash {
    type Error = SimError;
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        let at = offset as usize;
        let cells = self.bytes.borrow();
        let src = cells.get(at..at + bytes.len()).ok_or(SimError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.borrow().len()
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        let (from, to) = (from as usize, to as usize);
        if from % SECTOR != 0 || to % SECTOR != 0 {
            return Err(SimError::Misaligned);
        }
        if to > self.capacity() || from > to {
            return Err(SimError::OutOfBounds);
        }
        self.erases += (to - from) / SECTOR;
        for i in from..to {
            if !self.spend() {
                return Err(SimError::PowerCut);
            }
            self.bytes.borrow_mut()[i] = 0xFF;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let at = offset as usize;
        if at % WORD != 0 || bytes.len() % WORD != 0 {
            return Err(SimError::Misaligned);
        }
        if at + bytes.len() > self.capacity() {
            return Err(SimError::OutOfBounds);
        }
        if let Some(i) = (at..at + bytes.len()).find(|i| self.bytes.borrow()[*i] != 0xFF) {
            return Err(SimError::NotErased(i));
        }
        for (i, b) in bytes.iter().enumerate() {
            if !self.spend() {
                return Err(SimError::PowerCut);
            }
            self.bytes.borrow_mut()[at + i] = *b;
        }
        Ok(())
    }
}
