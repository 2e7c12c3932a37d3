//! One file the browser downloads or seeds: a thin driver around the shared swarm core
//! ([`mtorrent_shared::Swarm`]). It keeps the core in a `RefCell`, assembles received pieces in
//! their buffers, has them checked and written by the store, reads blocks peers ask for (held
//! back for a peer that leaves what it was sent unread), and wakes the connection tasks the
//! core names. Single-threaded, like everything in a page: connection tasks borrow the state
//! briefly, never across an await.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use js_sys::Uint8Array;
use mtorrent_shared::wire::{Message, PieceHeader};
use mtorrent_shared::{
    Bitfield, BlockRef, CloseReason, Metainfo, PeerId, PeerKey, SessionError, SwarmConfig,
    SwarmEvent, ValidPieceIndex, BLOCK_SIZE,
};

use crate::clock;
use crate::connection::dials::{Claim, Dialled, Slots};
use crate::events::{EventSink, PeerEvent};
use crate::piece_buffer::{self, PieceBuffer};
use crate::store::PieceStore;

/// One downloaded or seeded file.
pub struct Swarm {
    /// Its `.mtorrent`.
    pub metainfo: Metainfo,
    /// Where its bytes are.
    pub store: PieceStore,
    events: EventSink,
    state: RefCell<State>,
    stopped: Cell<bool>,
    last_published: Cell<f64>,
    finished: RefCell<Option<oneshot::Sender<Result<(), String>>>>,
    /// Wakes [`Swarm::run_timers`] when the core's deadline moved earlier.
    timer: RefCell<Option<mpsc::UnboundedSender<()>>>,
    /// The peer addresses this file is dialling or connected to.
    dialled: Dialled,
}

struct State {
    core: mtorrent_shared::Swarm,
    /// Pieces being received, each in its own buffer until it is verified and written.
    assembling: HashMap<u32, PieceBuffer>,
    /// Each connection's wake-up: it has messages to send, was closed, or the swarm stopped.
    connections: HashMap<PeerKey, mpsc::UnboundedSender<()>>,
    /// The deadline [`Swarm::run_timers`] sleeps until.
    armed: Option<Duration>,
    /// The connections whose peers leave too much unread, with the blocks they asked for
    /// meanwhile, read once they catch up ([`Swarm::hold_reads`]).
    held: HashMap<PeerKey, VecDeque<BlockRef>>,
}

impl Swarm {
    /// A swarm to seed `store`, which holds every piece (already hashed by the page).
    pub fn seeding(
        metainfo: Metainfo,
        peer_id: PeerId,
        store: PieceStore,
        events: EventSink,
    ) -> Rc<Self> {
        let count = metainfo.lengths().piece_count();
        Self::new(
            metainfo,
            peer_id,
            store,
            events,
            Bitfield::full(count),
            None,
        )
    }

    /// A swarm to download into `store`; `finished` hears when every piece is verified and
    /// written, or why the download stopped.
    pub fn downloading(
        metainfo: Metainfo,
        peer_id: PeerId,
        store: PieceStore,
        events: EventSink,
        finished: oneshot::Sender<Result<(), String>>,
    ) -> Rc<Self> {
        let count = metainfo.lengths().piece_count();
        let swarm = Self::new(
            metainfo,
            peer_id,
            store,
            events,
            Bitfield::new(count),
            Some(finished),
        );
        // An empty file is complete at once.
        swarm.finish_if_done();
        swarm
    }

    fn new(
        metainfo: Metainfo,
        peer_id: PeerId,
        store: PieceStore,
        events: EventSink,
        have: Bitfield,
        finished: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Rc<Self> {
        // A download in the private file system cannot be read back before it is complete, so
        // a downloading browser offers nothing until then.
        let config = SwarmConfig {
            offer_incomplete: false,
            ..SwarmConfig::default()
        };
        let core = mtorrent_shared::Swarm::new(
            metainfo.lengths(),
            metainfo.info_hash(),
            peer_id,
            have,
            config,
            (js_sys::Math::random() * 2f64.powi(53)) as u64,
        )
        .expect("a bitfield of the right size and a valid default config");
        Rc::new(Self {
            metainfo,
            store,
            events,
            state: RefCell::new(State {
                core,
                assembling: HashMap::new(),
                connections: HashMap::new(),
                armed: None,
                held: HashMap::new(),
            }),
            stopped: Cell::new(false),
            last_published: Cell::new(0.0),
            finished: RefCell::new(finished),
            timer: RefCell::new(None),
            dialled: Dialled::default(),
        })
    }

    /// Whether every piece is verified (and, downloading, written).
    pub fn is_complete(&self) -> bool {
        self.state.borrow().core.is_complete()
    }

    /// Whether this swarm serves pieces (it has the whole file).
    pub fn is_seeding(&self) -> bool {
        self.finished.borrow().is_none() && self.is_complete()
    }

    /// Bytes still missing, for the tracker.
    pub fn left(&self) -> u64 {
        self.metainfo.size() - self.state.borrow().core.stats().bytes
    }

    /// Whether the swarm was stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Whether a peer with this id is connected.
    pub fn is_connected(&self, peer_id: PeerId) -> bool {
        self.state.borrow().core.is_connected(peer_id)
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        self.state.borrow().core.peer_count()
    }

    /// Takes `url` for a connection of this file, and a place in `slots`, while the claim
    /// lives; `None` if this file already dials or is connected to `url`, or no place is free.
    pub fn claim_dial(&self, url: &str, slots: &Rc<Slots>) -> Option<Claim> {
        self.dialled.claim(url, slots)
    }

    /// How many peer addresses this file is dialling or connected to.
    pub fn dial_count(&self) -> usize {
        self.dialled.len()
    }

    /// The bytes of the blocks a peer may ask for at once: the most an honest peer ever has
    /// waiting to be sent to it.
    pub fn serving_window_bytes(&self) -> u64 {
        let requests = self
            .state
            .borrow()
            .core
            .config()
            .session
            .max_requests_accepted;
        u64::from(requests.max(1)) * u64::from(BLOCK_SIZE)
    }

    /// Holds back reading the blocks connection `key` asks for (`hold`), because its peer
    /// leaves what it was sent unread; or reads those it asked for meanwhile and serves it
    /// again. While held, the blocks asked for wait in a queue no longer than the requests a
    /// peer may have outstanding: a peer that asks for more (it cancelled some, or asks again)
    /// has the oldest rejected.
    pub fn hold_reads(self: &Rc<Self>, key: PeerKey, hold: bool) {
        let released = {
            let mut state = self.state.borrow_mut();
            if hold {
                state.held.entry(key).or_default();
                None
            } else {
                state.held.remove(&key)
            }
        };
        for block in released.into_iter().flatten() {
            self.read(key, block);
        }
    }

    /// Registers a new connection; returns its key and its wake-ups.
    pub fn connect(self: &Rc<Self>) -> (PeerKey, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded();
        let key = {
            let mut state = self.state.borrow_mut();
            let key = state.core.add_peer(clock::now());
            state.connections.insert(key, tx);
            key
        };
        self.process();
        (key, rx)
    }

    /// Forgets a connection that ended; its requests go to others.
    pub fn disconnect(self: &Rc<Self>, key: PeerKey) {
        {
            let mut state = self.state.borrow_mut();
            state.connections.remove(&key);
            state.held.remove(&key);
            state.core.handle_peer_closed(key);
        }
        self.process();
        self.publish();
    }

    /// One decoded message from connection `key`.
    pub fn handle_message(self: &Rc<Self>, key: PeerKey, message: Message) -> Result<(), String> {
        let result = self
            .state
            .borrow_mut()
            .core
            .handle_message(key, clock::now(), message);
        self.after_input(result)
    }

    /// A Piece frame from connection `key` whose block bytes, `data`, stay in the buffer they
    /// arrived in: kept in their piece's buffer if the core wants them.
    pub fn handle_piece(
        self: &Rc<Self>,
        key: PeerKey,
        header: PieceHeader,
        data: Uint8Array,
    ) -> Result<(), String> {
        let result = {
            let mut state = self.state.borrow_mut();
            let result = state.core.handle_piece_header(key, clock::now(), header);
            if let Ok(Some(block)) = result {
                self.assemble(&mut state, block, data);
            }
            result.map(|_| ())
        };
        self.after_input(result)
    }

    fn after_input(self: &Rc<Self>, result: Result<(), SessionError>) -> Result<(), String> {
        self.process();
        result.map_err(|e| e.to_string())
    }

    /// What connection `key` sends next, and whether the core closed it.
    pub fn transmit(self: &Rc<Self>, key: PeerKey) -> (Vec<Message>, Option<CloseReason>) {
        let (messages, closed) = {
            let mut state = self.state.borrow_mut();
            let now = clock::now();
            let messages: Vec<Message> =
                std::iter::from_fn(|| state.core.poll_transmit(key, now)).collect();
            (messages, state.core.close_reason(key))
        };
        if messages.iter().any(|m| matches!(m, Message::Piece { .. })) {
            self.publish_now_and_then();
        }
        self.process();
        (messages, closed)
    }

    /// Publishes progress at most every 100 ms: the page need not redraw for every piece.
    fn publish_now_and_then(&self) {
        let now = js_sys::Date::now();
        if now - self.last_published.get() >= 100.0 {
            self.last_published.set(now);
            self.publish();
        }
    }

    /// Puts a received block's bytes into its piece's buffer.
    fn assemble(&self, state: &mut State, block: BlockRef, bytes: Uint8Array) {
        let lengths = self.metainfo.lengths();
        let store = &self.store;
        state
            .assembling
            .entry(block.piece.get())
            .or_insert_with(|| {
                if store.checks_pieces() {
                    let blocks = lengths.block_count(block.piece) as usize;
                    PieceBuffer::Blocks(Vec::with_capacity(blocks))
                } else {
                    PieceBuffer::Here(vec![0; lengths.piece_length(block.piece) as usize])
                }
            })
            .put(block.offset as usize, bytes);
    }

    /// Carries out what the core asks for: reads and piece checks in the background, block
    /// bytes into their pieces, closes; then wakes the connections it names and the timer.
    fn process(self: &Rc<Self>) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let most_held = usize::from(state.core.config().session.max_requests_accepted.max(1));
        while let Some(event) = state.core.poll_event() {
            match event {
                SwarmEvent::ReadBlock { peer, block } => match state.held.get_mut(&peer) {
                    Some(held) => {
                        if held.len() >= most_held {
                            let oldest = held.pop_front().expect("a full queue");
                            state.core.reject_block(peer, oldest);
                        }
                        held.push_back(block);
                    }
                    None => self.read(peer, block),
                },
                SwarmEvent::WriteBlock { block, data, .. } => {
                    self.assemble(state, block, Uint8Array::from(&data[..]));
                }
                SwarmEvent::VerifyPiece(piece) => {
                    if let Some(buffer) = state.assembling.remove(&piece.get()) {
                        self.verify_and_write(piece, buffer);
                    }
                }
                // The connection learns why from the core when it wakes.
                SwarmEvent::Close { peer, .. } => {
                    if let Some(connection) = state.connections.get(&peer) {
                        let _ = connection.unbounded_send(());
                    }
                }
            }
        }
        while let Some(key) = state.core.poll_wakeup() {
            if let Some(connection) = state.connections.get(&key) {
                let _ = connection.unbounded_send(());
            }
        }
        let deadline = state.core.poll_timeout();
        if deadline.is_some_and(|d| state.armed.is_none_or(|armed| d < armed)) {
            state.armed = deadline;
            if let Some(timer) = self.timer.borrow().as_ref() {
                let _ = timer.unbounded_send(());
            }
        }
    }

    /// Reads a block a peer asked for, in the background, and hands it to the core.
    fn read(self: &Rc<Self>, peer: PeerKey, block: BlockRef) {
        let swarm = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let offset =
                swarm.metainfo.lengths().piece_offset(block.piece) + u64::from(block.offset);
            let read = swarm.store.read(offset, block.length).await;
            {
                let mut state = swarm.state.borrow_mut();
                match read {
                    Ok(data) => state.core.send_block(peer, block, data.into()),
                    Err(e) => {
                        swarm.events.emit(&PeerEvent::Warning {
                            info_hash: Some(swarm.metainfo.info_hash().to_hex()),
                            message: format!("cannot read the shared file: {e}"),
                        });
                        state.core.reject_block(peer, block);
                    }
                }
            }
            swarm.process();
        });
    }

    /// Checks a completed piece and, if it is good, writes it to the store, in the background;
    /// then records the outcome. A store that checks pieces itself (off this thread) is given
    /// the piece and its expected hash; otherwise the piece is hashed here (WebCrypto when the
    /// browser has it) and written if it matches.
    fn verify_and_write(self: &Rc<Self>, piece: ValidPieceIndex, buffer: PieceBuffer) {
        let swarm = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let expected = swarm.metainfo.piece_hashes()[piece.get() as usize];
            let offset = swarm.metainfo.lengths().piece_offset(piece);
            let saved = match buffer {
                PieceBuffer::Blocks(blocks) => {
                    let blocks = piece_buffer::in_order(blocks);
                    swarm
                        .store
                        .write_if_hash_is(offset, blocks, &expected)
                        .await
                }
                PieceBuffer::Here(mut data) => {
                    if crate::digest::sha1(&mut data).await == expected {
                        swarm.store.write(offset, &data).await.map(|()| true)
                    } else {
                        Ok(false)
                    }
                }
            };
            swarm.piece_checked(piece, saved);
        });
    }

    /// Records what became of a completed piece: `Ok(true)` verified and written, `Ok(false)`
    /// failed its hash (it is fetched again), `Err` not saved (the download fails).
    fn piece_checked(self: &Rc<Self>, piece: ValidPieceIndex, saved: Result<bool, String>) {
        let good = match saved {
            Ok(good) => good,
            Err(e) => {
                self.state
                    .borrow_mut()
                    .core
                    .handle_piece_verified(piece, false);
                self.fail(format!("cannot save the file: {e}"));
                return;
            }
        };
        self.state
            .borrow_mut()
            .core
            .handle_piece_verified(piece, good);
        self.process();
        if good {
            self.publish_now_and_then();
            self.finish_if_done();
        } else {
            self.events.emit(&PeerEvent::Warning {
                info_hash: Some(self.metainfo.info_hash().to_hex()),
                message: format!(
                    "piece {} failed its check and is fetched again",
                    piece.get()
                ),
            });
            self.publish();
        }
    }

    fn finish_if_done(&self) {
        if self.is_complete() {
            self.publish();
            if let Some(finished) = self.finished.borrow_mut().take() {
                let _ = finished.send(Ok(()));
            }
        }
    }

    /// Ends a download with an error.
    pub fn fail(&self, message: String) {
        if let Some(finished) = self.finished.borrow_mut().take() {
            let _ = finished.send(Err(message));
        }
        self.stop();
    }

    /// Re-assigns stalled requests, sends keep-alives and closes silent connections, if their
    /// time has come; [`Swarm::run_timers`] calls it when the core's deadline passes.
    pub fn tick(self: &Rc<Self>) {
        self.state.borrow_mut().core.handle_timeout(clock::now());
        self.process();
    }

    /// Runs the core's timers until the swarm stops: sleeps until the core's next deadline
    /// (re-read whenever it moves earlier), then calls [`Swarm::tick`].
    pub async fn run_timers(self: Rc<Self>) {
        let (tx, mut moved) = mpsc::unbounded();
        *self.timer.borrow_mut() = Some(tx);
        while !self.is_stopped() {
            let deadline = {
                let mut state = self.state.borrow_mut();
                state.armed = state.core.poll_timeout();
                state.armed
            };
            let Some(deadline) = deadline else {
                // Nothing to time until the core says otherwise (or the swarm stops).
                if moved.next().await.is_none() {
                    break;
                }
                continue;
            };
            let sleep = Box::pin(clock::sleep(deadline.saturating_sub(clock::now())));
            if let futures::future::Either::Left(_) =
                futures::future::select(sleep, moved.next()).await
            {
                self.tick();
            }
        }
        self.timer.borrow_mut().take();
    }

    /// Stops the swarm: every connection closes, and a pending download ends.
    pub fn stop(&self) {
        self.stopped.set(true);
        if let Some(finished) = self.finished.borrow_mut().take() {
            let _ = finished.send(Err("the download was stopped".into()));
        }
        for connection in self.state.borrow().connections.values() {
            let _ = connection.unbounded_send(());
        }
        if let Some(timer) = self.timer.borrow().as_ref() {
            let _ = timer.unbounded_send(());
        }
    }

    /// Tells the page where the swarm stands.
    pub fn publish(&self) {
        let state = self.state.borrow();
        let stats = state.core.stats();
        let event = PeerEvent::Progress {
            info_hash: self.metainfo.info_hash().to_hex(),
            pieces: stats.pieces,
            piece_count: self.metainfo.lengths().piece_count(),
            bytes: stats.bytes,
            peers: stats.peers,
            uploaded: stats.uploaded,
            failed_pieces: stats.failed_pieces,
        };
        drop(state);
        self.events.emit(&event);
    }

    /// The page's event sink.
    pub fn events(&self) -> &EventSink {
        &self.events
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
pub(crate) mod tests {
    use super::*;
    use mtorrent_shared::wire::{BlockRequest, Handshake, PROTOCOL_VERSION};
    use mtorrent_shared::{InfoHash, PieceHash, PIECE_SIZE};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_test::wasm_bindgen_test as test;

    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    /// A swarm seeding a file of `pieces` pieces from a store that counts its reads (in its
    /// `reads` property), and the store.
    pub(crate) fn seeding_swarm(pieces: u32) -> (Rc<Swarm>, JsValue) {
        let store = js_sys::Function::new_no_args(
            "return { reads: 0, \
               read(offset, length) { this.reads += 1; return Promise.resolve(new Uint8Array(length)); }, \
               write() { return Promise.resolve(); } };",
        )
        .call0(&JsValue::NULL)
        .unwrap();
        let metainfo = Metainfo::new(
            ["ws://127.0.0.1:1/ws".into(), "ws://127.0.0.1:2/ws".into()],
            "test.bin".into(),
            u64::from(pieces) * u64::from(PIECE_SIZE),
            vec![PieceHash([0; 20]); pieces as usize],
        )
        .unwrap();
        let events = EventSink::new(js_sys::Function::new_no_args(""));
        let swarm = Swarm::seeding(
            metainfo,
            PeerId([1; 20]),
            store.clone().unchecked_into(),
            events,
        );
        (swarm, store)
    }

    fn reads(store: &JsValue) -> f64 {
        js_sys::Reflect::get(store, &"reads".into())
            .unwrap()
            .as_f64()
            .unwrap()
    }

    /// Block `n` of the file, as a request.
    fn block(n: u32) -> BlockRequest {
        BlockRequest {
            piece: n / 2,
            offset: n % 2 * BLOCK_SIZE,
            length: BLOCK_SIZE,
        }
    }

    /// Connects a peer that wants everything and is unchoked.
    fn interested_peer(swarm: &Rc<Swarm>, info_hash: InfoHash, pieces: u32) -> PeerKey {
        let (key, _wakeups) = swarm.connect();
        let handshake = Handshake {
            version: PROTOCOL_VERSION,
            info_hash,
            peer_id: PeerId([2; 20]),
            max_requests: 16,
        };
        for message in [
            Message::Handshake(handshake),
            Message::Bitfield(Bitfield::new(pieces).to_wire().into()),
            Message::Interested,
        ] {
            swarm.handle_message(key, message).unwrap();
        }
        key
    }

    async fn settle() {
        clock::sleep(Duration::from_millis(50)).await;
    }

    #[test]
    async fn blocks_asked_for_while_held_are_read_only_once_released_and_no_more_than_a_window() {
        let pieces = 16;
        let (swarm, store) = seeding_swarm(pieces);
        let key = interested_peer(&swarm, swarm.metainfo.info_hash(), pieces);
        let window = usize::from(SwarmConfig::default().session.max_requests_accepted);
        assert_eq!(window, 16);
        swarm.hold_reads(key, true);
        for n in 0..16 {
            swarm
                .handle_message(key, Message::Request(block(n)))
                .unwrap();
        }
        // The peer cancels four and asks for four others: twenty asked for while held.
        for n in 0..4 {
            swarm
                .handle_message(key, Message::Cancel(block(n)))
                .unwrap();
        }
        for n in 16..20 {
            swarm
                .handle_message(key, Message::Request(block(n)))
                .unwrap();
        }
        settle().await;
        assert_eq!(reads(&store), 0.0, "no block is read while held");
        swarm.hold_reads(key, false);
        settle().await;
        assert_eq!(
            reads(&store),
            16.0,
            "the window's worth is read, the oldest dropped"
        );
        let (messages, _) = swarm.transmit(key);
        let pieces_sent = messages
            .iter()
            .filter(|m| matches!(m, Message::Piece { .. }))
            .count();
        assert_eq!(pieces_sent, 16);
        // Released for good: what is asked for now is read at once.
        swarm
            .handle_message(key, Message::Request(block(0)))
            .unwrap();
        settle().await;
        assert_eq!(reads(&store), 17.0);
    }
}
