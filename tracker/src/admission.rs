//! Who may open a WebSocket connection: at most so many in all, and so many from one client
//! address, so that one host cannot take every place. A [`Slot`] holds its place until it is
//! dropped, whichever way the connection ends (or if its upgrade never completes).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The places, and who holds them.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    address: IpAddr,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every place is taken.
    Full,
    /// Its address holds all the places one address may.
    AddressFull,
}

impl Admission {
    /// At most `max_total` connections, `max_per_address` of them from one address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            held: Mutex::new(Held::default()),
        })
    }

    /// A place for a connection from `address`, if there is one.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refused> {
        let mut held = self.lock();
        if held.total >= self.max_total {
            return Err(Refused::Full);
        }
        let from_address = held.by_address.entry(address).or_default();
        if *from_address >= self.max_per_address {
            return Err(Refused::AddressFull);
        }
        *from_address += 1;
        held.total += 1;
        Ok(Slot {
            admission: self.clone(),
            address,
        })
    }

    /// Connections admitted and not yet gone.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.admission.lock();
        held.total -= 1;
        if let Some(count) = held.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                held.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_in_all_and_per_address_and_freed_on_drop() {
        let admission = Admission::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refused::AddressFull);
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refused::Full);
        assert_eq!(admission.open(), 3);
        drop(first);
        assert_eq!(admission.open(), 2);
        let _again = admission.admit(a).unwrap();
        assert!(admission.lock().by_address.len() == 2);
    }
}
