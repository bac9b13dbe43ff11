//! Raw mappings: [`SharedWindow`] (pages shared with the hypervisor, mapped with the C-bit
//! clear) and [`DirectMap`] (guest memory mapped privately, C-bit set, at a fixed offset).
//! Both copy byte by byte with volatile accesses: the hypervisor or another vCPU may write the
//! memory at any moment, and nothing here hands out a reference into it.

use crate::memory::{MappingError, PrivateMemory, SharedMemory};

/// Checks that `gpa..gpa+len` lies inside `base..base+size` and returns the offset.
fn offset_in(base: u64, size: usize, gpa: u64, len: usize) -> Result<usize, MappingError> {
    let err = MappingError::OutOfRange { gpa, len };
    let offset = gpa.checked_sub(base).ok_or(err)?;
    let offset = usize::try_from(offset).map_err(|_| err)?;
    let end = offset.checked_add(len).ok_or(err)?;
    if end > size {
        return Err(err);
    }
    Ok(offset)
}

/// Volatile copy from raw memory into `out`.
///
/// # Safety
/// `src..src+out.len()` is mapped and readable for the duration of the call.
unsafe fn copy_from(src: *const u8, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        // SAFETY: `i < out.len()`, inside the readable range the caller guarantees.
        *byte = unsafe { core::ptr::read_volatile(src.add(i)) };
    }
}

/// Volatile copy of `data` into raw memory.
///
/// # Safety
/// `dst..dst+data.len()` is mapped and writable for the duration of the call, and aliased by
/// no Rust reference.
unsafe fn copy_to(dst: *mut u8, data: &[u8]) {
    for (i, byte) in data.iter().enumerate() {
        // SAFETY: `i < data.len()`, inside the writable range the caller guarantees.
        unsafe { core::ptr::write_volatile(dst.add(i), *byte) };
    }
}

/// A contiguous range of pages shared with the hypervisor, mapped at `base`.
#[derive(Debug)]
pub struct SharedWindow {
    base: *mut u8,
    gpa: u64,
    size: usize,
}

impl SharedWindow {
    /// A window of `size` bytes at guest physical `gpa`, mapped at virtual `base`.
    ///
    /// # Safety
    /// `base..base+size` is mapped readable and writable (C-bit clear) onto guest physical
    /// `gpa..gpa+size` for the window's lifetime; those pages are shared in the RMP, and no Rust
    /// reference points into them.
    pub unsafe fn new(base: *mut u8, gpa: u64, size: usize) -> Self {
        SharedWindow { base, gpa, size }
    }
}

impl SharedMemory for SharedWindow {
    fn read_shared(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError> {
        let offset = offset_in(self.gpa, self.size, gpa, out.len())?;
        // SAFETY: `offset + out.len() <= size` was checked; the constructor guarantees the
        // mapping.
        unsafe { copy_from(self.base.add(offset), out) };
        Ok(())
    }

    fn write_shared(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError> {
        let offset = offset_in(self.gpa, self.size, gpa, data.len())?;
        // SAFETY: as in `read_shared`; the window is writable and unaliased.
        unsafe { copy_to(self.base.add(offset), data) };
        Ok(())
    }
}

/// Guest physical memory `0..size` mapped privately (C-bit set) at virtual `base`.
#[derive(Debug)]
pub struct DirectMap {
    base: *mut u8,
    size: usize,
}

impl DirectMap {
    /// The direct map.
    ///
    /// # Safety
    /// `base..base+size` is mapped readable and writable with the C-bit set onto guest
    /// physical `0..size` for the map's lifetime, and no Rust reference points into it. Pages
    /// that are not validated fault on access: callers check validation first (as
    /// [`crate::memory::SnpMemory`] does).
    pub unsafe fn new(base: *mut u8, size: usize) -> Self {
        DirectMap { base, size }
    }
}

impl PrivateMemory for DirectMap {
    fn read_private(&mut self, gpa: u64, out: &mut [u8]) -> Result<(), MappingError> {
        let offset = offset_in(0, self.size, gpa, out.len())?;
        // SAFETY: range checked against the mapping the constructor guarantees.
        unsafe { copy_from(self.base.add(offset), out) };
        Ok(())
    }

    fn write_private(&mut self, gpa: u64, data: &[u8]) -> Result<(), MappingError> {
        let offset = offset_in(0, self.size, gpa, data.len())?;
        // SAFETY: range checked against the writable, unaliased mapping.
        unsafe { copy_to(self.base.add(offset), data) };
        Ok(())
    }

    fn linear_address(&self, gpa: u64) -> Option<u64> {
        let offset = offset_in(0, self.size, gpa, 1).ok()?;
        (self.base as u64).checked_add(offset as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks() {
        assert_eq!(offset_in(0x1000, 0x2000, 0x1000, 0x2000), Ok(0));
        assert_eq!(offset_in(0x1000, 0x2000, 0x2FFF, 1), Ok(0x1FFF));
        for (gpa, len) in [(0xFFF, 1), (0x2FFF, 2), (0x3000, 1), (u64::MAX, 2)] {
            assert_eq!(
                offset_in(0x1000, 0x2000, gpa, len),
                Err(MappingError::OutOfRange { gpa, len })
            );
        }
    }

    #[test]
    fn window_copies_within_bounds() {
        let mut backing = std::vec![0u8; 0x2000];
        // SAFETY: the Vec outlives the window, and is not touched directly until the window's
        // last use.
        let mut w = unsafe { SharedWindow::new(backing.as_mut_ptr(), 0x10_000, 0x2000) };
        w.write_shared(0x10_FFE, &[1, 2, 3, 4]).unwrap();
        let mut out = [0u8; 4];
        w.read_shared(0x10_FFE, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(w.read_shared(0x11_FFF, &mut out).is_err());
        assert!(w.write_shared(0xF_FFF, &out).is_err());
        assert_eq!(&backing[0xFFE..0x1002], &[1, 2, 3, 4]);
    }
}
