//! Vault messages in parts over the vTPM's vendor command (`svsm_abi::tpm_vendor`, "Parts"): a
//! request staged over several TPM commands, run as one vault message, its response read back
//! over several. A few transfers are kept per VMPL, each owned by the VMPL that started it
//! (another VMPL's transfer looks like none); a VMPL's oldest is dropped for its new one, so no
//! VMPL can push another's transfers out. Staged
//! bytes may be a guest's plaintext: they are wiped when taken, read to the end, or dropped.

use crate::platform::Vmpl;
use alloc::vec::Vec;
use svsm_abi::vault::MAX_MESSAGE;
use zeroize::Zeroizing;

/// Transfers kept at once per VMPL.
pub(crate) const MAX_TRANSFERS: usize = 4;

/// Why a part was not taken (the guest gets SVSM_ERR_INVALID_PARAMETER).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartRefusal {
    /// No such transfer of this VMPL (never started, finished, or dropped for newer ones).
    UnknownTransfer,
    /// The offset is not where the staged request ends, or past the response.
    OutOfOrder,
    /// The staged request would exceed the vault's largest message.
    TooLong,
}

struct Transfer {
    owner: Vmpl,
    id: u32,
    request: Zeroizing<Vec<u8>>,
    response: Option<Zeroizing<Vec<u8>>>,
    used: u64,
}

/// The transfers in progress.
#[derive(Default)]
pub(crate) struct Transfers {
    list: Vec<Transfer>,
    clock: u64,
}

impl Transfers {
    fn find(&mut self, owner: Vmpl, id: u32) -> Option<&mut Transfer> {
        self.clock += 1;
        let now = self.clock;
        let t = self
            .list
            .iter_mut()
            .find(|t| t.owner == owner && t.id == id)?;
        t.used = now;
        Some(t)
    }

    fn forget(&mut self, owner: Vmpl, id: u32) {
        // Dropping a transfer wipes its buffers (Zeroizing).
        self.list.retain(|t| !(t.owner == owner && t.id == id));
    }

    /// Appends `data` at `offset` of `id`'s staged request; offset 0 starts it anew. Returns
    /// the staged length.
    pub(crate) fn write(
        &mut self,
        owner: Vmpl,
        id: u32,
        offset: u32,
        data: &[u8],
    ) -> Result<usize, PartRefusal> {
        if offset == 0 {
            self.forget(owner, id);
            let own = self.list.iter().filter(|t| t.owner == owner).count();
            if own >= MAX_TRANSFERS {
                if let Some(oldest) = self
                    .list
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.owner == owner)
                    .min_by_key(|(_, t)| t.used)
                    .map(|(i, _)| i)
                {
                    self.list.swap_remove(oldest);
                }
            }
            self.clock += 1;
            self.list.push(Transfer {
                owner,
                id,
                request: Zeroizing::new(Vec::new()),
                response: None,
                used: self.clock,
            });
        }
        let t = self.find(owner, id).ok_or(PartRefusal::UnknownTransfer)?;
        if t.response.is_some() || offset as usize != t.request.len() {
            return Err(PartRefusal::OutOfOrder);
        }
        if t.request.len() + data.len() > MAX_MESSAGE {
            return Err(PartRefusal::TooLong);
        }
        t.request.extend_from_slice(data);
        Ok(t.request.len())
    }

    /// Appends `data` and hands out the whole staged request to run; the transfer stays for
    /// its response.
    pub(crate) fn take_request(
        &mut self,
        owner: Vmpl,
        id: u32,
        offset: u32,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, PartRefusal> {
        self.write(owner, id, offset, data)?;
        let t = self.find(owner, id).ok_or(PartRefusal::UnknownTransfer)?;
        Ok(core::mem::take(&mut t.request))
    }

    /// Keeps `response` for `id` to be read from `from` on (nothing is kept when it was all
    /// answered already).
    pub(crate) fn keep_response(
        &mut self,
        owner: Vmpl,
        id: u32,
        response: Zeroizing<Vec<u8>>,
        from: usize,
    ) {
        if from >= response.len() {
            self.forget(owner, id);
        } else if let Some(t) = self.find(owner, id) {
            t.response = Some(response);
        }
    }

    /// Up to `max` response bytes from `offset`, and the response's whole length; a response
    /// read to its end is forgotten (and wiped) once copied by `f`.
    pub(crate) fn read<X>(
        &mut self,
        owner: Vmpl,
        id: u32,
        offset: u32,
        max: usize,
        f: impl FnOnce(&[u8], usize) -> X,
    ) -> Result<X, PartRefusal> {
        let t = self.find(owner, id).ok_or(PartRefusal::UnknownTransfer)?;
        let response = t.response.as_ref().ok_or(PartRefusal::OutOfOrder)?;
        let start = offset as usize;
        if start > response.len() {
            return Err(PartRefusal::OutOfOrder);
        }
        let end = start.saturating_add(max).min(response.len());
        let done = end == response.len();
        let out = f(response.get(start..end).unwrap_or(&[]), response.len());
        if done {
            self.forget(owner, id);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmpl(n: u8) -> Vmpl {
        Vmpl::new(n).unwrap()
    }

    #[test]
    fn a_transfer_stages_runs_and_reads_in_order() {
        let mut t = Transfers::default();
        assert_eq!(t.write(vmpl(1), 7, 0, b"abc"), Ok(3));
        assert_eq!(t.write(vmpl(1), 7, 3, b"de"), Ok(5));
        assert_eq!(t.write(vmpl(1), 7, 2, b"x"), Err(PartRefusal::OutOfOrder));
        // Another VMPL's transfer of the same id does not exist for it.
        assert_eq!(
            t.write(vmpl(2), 7, 5, b"x"),
            Err(PartRefusal::UnknownTransfer)
        );
        let request = t.take_request(vmpl(1), 7, 5, b"f").unwrap();
        assert_eq!(request.as_slice(), b"abcdef");
        t.keep_response(vmpl(1), 7, Zeroizing::new(b"0123456789".to_vec()), 4);
        assert_eq!(
            t.read(vmpl(1), 7, 4, 4, |b, total| (b.to_vec(), total)),
            Ok((b"4567".to_vec(), 10))
        );
        assert_eq!(
            t.read(vmpl(2), 7, 8, 4, |b, _| b.to_vec()),
            Err(PartRefusal::UnknownTransfer)
        );
        assert_eq!(
            t.read(vmpl(1), 7, 8, 4, |b, _| b.to_vec()),
            Ok(b"89".to_vec())
        );
        // Read to its end: gone.
        assert_eq!(
            t.read(vmpl(1), 7, 0, 4, |b, _| b.to_vec()),
            Err(PartRefusal::UnknownTransfer)
        );
    }

    #[test]
    fn limits_hold_and_the_oldest_transfer_goes() {
        let mut t = Transfers::default();
        let big = alloc::vec![0u8; MAX_MESSAGE];
        assert_eq!(t.write(vmpl(1), 1, 0, &big), Ok(MAX_MESSAGE));
        assert_eq!(
            t.write(vmpl(1), 1, MAX_MESSAGE as u32, b"x"),
            Err(PartRefusal::TooLong)
        );
        for id in 2..=(MAX_TRANSFERS as u32 + 1) {
            t.write(vmpl(1), id, 0, b"x").unwrap();
        }
        assert_eq!(t.list.len(), MAX_TRANSFERS);
        assert_eq!(
            t.write(vmpl(1), 1, 1, b"x"),
            Err(PartRefusal::UnknownTransfer)
        );
        // Another VMPL's transfers do not push VMPL1's out: each VMPL has its own four.
        for id in 100..110 {
            t.write(vmpl(2), id, 0, b"y").unwrap();
        }
        assert_eq!(t.write(vmpl(1), 2, 1, b"x"), Ok(2));
        assert_eq!(t.list.len(), 2 * MAX_TRANSFERS);
        // A response fully answered by RUN leaves nothing behind.
        t.take_request(vmpl(3), 9, 0, b"req").unwrap();
        t.keep_response(vmpl(3), 9, Zeroizing::new(b"short".to_vec()), 5);
        assert!(t.list.iter().all(|x| x.owner != vmpl(3)));
    }
}
