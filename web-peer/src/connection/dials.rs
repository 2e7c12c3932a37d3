//! Which peers the page dials. A tracker's signal or reply names an address to dial, and
//! anyone can make a tracker name any address, any number of times: the page dials each address
//! once per file, keeps no second connection to it, and holds at most
//! [`MAX_PEER_CONNECTIONS`] peer connections in all, so it cannot be made to open WebSockets
//! to some host again and again.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

/// Most peer connections the page holds at once, being dialled or open, over all its files;
/// beyond, it dials no more until one ends.
pub const MAX_PEER_CONNECTIONS: usize = 64;

/// Places for peer connections, shared by all of a page's files.
#[derive(Debug)]
pub struct Slots {
    used: Cell<usize>,
    limit: usize,
}

impl Slots {
    /// `limit` places, none used.
    pub fn new(limit: usize) -> Rc<Self> {
        Rc::new(Self {
            used: Cell::new(0),
            limit,
        })
    }

    /// How many places are taken.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.get()
    }
}

thread_local! {
    static PAGE_SLOTS: Rc<Slots> = Slots::new(MAX_PEER_CONNECTIONS);
}

/// The page's places for peer connections ([`MAX_PEER_CONNECTIONS`]).
pub fn page_slots() -> Rc<Slots> {
    PAGE_SLOTS.with(Rc::clone)
}

/// One file's peer addresses being dialled or connected to.
#[derive(Debug, Default)]
pub struct Dialled {
    urls: Rc<RefCell<HashSet<String>>>,
}

impl Dialled {
    /// Takes `url` for this file and a place in `slots`, for as long as the returned [`Claim`]
    /// lives; `None` if the file already has a connection to `url` or no place is free.
    pub fn claim(&self, url: &str, slots: &Rc<Slots>) -> Option<Claim> {
        if slots.used.get() >= slots.limit || !self.urls.borrow_mut().insert(url.to_owned()) {
            return None;
        }
        slots.used.set(slots.used.get() + 1);
        Some(Claim {
            urls: self.urls.clone(),
            url: url.to_owned(),
            slots: slots.clone(),
        })
    }

    /// How many addresses this file is dialling or connected to.
    pub fn len(&self) -> usize {
        self.urls.borrow().len()
    }
}

/// A file's claim on an address and a connection place; given back when dropped, however the
/// connection ends.
#[derive(Debug)]
pub struct Claim {
    urls: Rc<RefCell<HashSet<String>>>,
    url: String,
    slots: Rc<Slots>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.urls.borrow_mut().remove(&self.url);
        self.slots.used.set(self.slots.used.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_dialled_once_per_file_until_its_connection_ends() {
        let slots = Slots::new(10);
        let file = Dialled::default();
        let first = file.claim("ws://victim:80/", &slots).expect("a first dial");
        // However many times a tracker names it: no second connection.
        for _ in 0..100 {
            assert!(file.claim("ws://victim:80/", &slots).is_none());
        }
        assert_eq!((file.len(), slots.used()), (1, 1));
        let other = file
            .claim("ws://other:80/", &slots)
            .expect("another address");
        drop(first);
        assert_eq!((file.len(), slots.used()), (1, 1));
        let again = file.claim("ws://victim:80/", &slots);
        assert!(again.is_some(), "dialled again once the connection ended");
        drop((other, again));
        assert_eq!((file.len(), slots.used()), (0, 0));
    }

    #[test]
    fn each_file_may_dial_the_same_address() {
        let slots = Slots::new(10);
        let (one, two) = (Dialled::default(), Dialled::default());
        let _a = one
            .claim("ws://peer:7003/", &slots)
            .expect("file one dials");
        let _b = two
            .claim("ws://peer:7003/", &slots)
            .expect("file two dials");
        assert_eq!(slots.used(), 2);
    }

    #[test]
    fn the_page_dials_no_more_than_its_places_over_all_files() {
        let slots = Slots::new(3);
        let (one, two) = (Dialled::default(), Dialled::default());
        let mut claims: Vec<Claim> = (0..2)
            .map(|n| one.claim(&format!("ws://a{n}:1/"), &slots).unwrap())
            .collect();
        claims.push(two.claim("ws://b:1/", &slots).unwrap());
        assert!(two.claim("ws://c:1/", &slots).is_none());
        assert!(one.claim("ws://c:1/", &slots).is_none());
        // A refused dial takes no address: it may be dialled once a place is free.
        assert_eq!((one.len(), two.len()), (2, 1));
        claims.pop();
        assert!(one.claim("ws://c:1/", &slots).is_some());
    }
}
