//! Where the meters live: the [`Store`] trait, and [`MemoryStore`], the embedded default.

use crate::rate::{Meter, Rate, Standing};
use futures_util::future::BoxFuture;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// What one limit meters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// A rate (requests or tokens per period).
    Rate(Rate),
    /// Requests in flight: at most `max` at once. A lease that is never released (a
    /// replica that died) expires after `lease` on stores shared between processes.
    InFlight {
        /// Most at once.
        max: u64,
        /// How long a lease may be held before a shared store forgets it.
        lease: Duration,
    },
}

/// One spend in a check: `cost` units of `gauge` under `key`. An in-flight charge counts
/// one slot per request (`cost` 1; 0 peeks): a shared store keeps one lease per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The meter's key (see the Redis key layout in the crate docs).
    pub key: String,
    /// What it meters.
    pub gauge: Gauge,
    /// Units to spend (for in-flight, 1).
    pub cost: u64,
}

impl Charge {
    /// The correction that gives this charge back entirely (a rate's units, an in-flight
    /// slot).
    pub fn refund(&self) -> Adjust<'_> {
        Adjust {
            key: &self.key,
            gauge: self.gauge,
            delta: -i64::try_from(self.cost).unwrap_or(i64::MAX),
        }
    }
}

/// One correction after the response: `delta` units of a rate (negative: given back), or
/// the release of an in-flight lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adjust<'a> {
    /// The meter's key.
    pub key: &'a str,
    /// What it meters.
    pub gauge: Gauge,
    /// Units to add (rate), ignored for in-flight (always a release).
    pub delta: i64,
}

/// The answer to a check. Either every charge was applied, or none was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// All charges applied; the standing of each, in order.
    Admitted(Vec<Standing>),
    /// Nothing applied.
    Denied {
        /// The first charge that did not fit.
        index: usize,
        /// When it would fit; `None`: never (the charge exceeds the limit's burst).
        retry_after: Option<Duration>,
        /// The standing of each charge, in order, without this request.
        standings: Vec<Standing>,
    },
}

/// A store failed (unreachable, timed out, bad reply).
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Where the meters live. Implementations must apply a check atomically (all charges or
/// none, with no other check in between for the same keys) and must not keep a meter past
/// the time it is full again (idle keys cost nothing).
///
/// `now` is microseconds on the limiter's clock ([`crate::Clock`]); replicas that share a
/// store must share a time base (the system clock, NTP-synchronised).
pub trait Store: Send + Sync + 'static {
    /// Checks every charge and applies them all, or none.
    fn acquire<'a>(
        &'a self,
        now: u64,
        charges: &'a [Charge],
    ) -> BoxFuture<'a, Result<Admission, StoreError>>;

    /// Applies corrections (refunds, extra usage, in-flight releases). `lease` identifies
    /// the request's in-flight leases (the same value passed to [`Store::acquire_leased`]).
    fn settle<'a>(
        &'a self,
        now: u64,
        lease: u64,
        adjust: &'a [Adjust<'a>],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Answers a check at once when the store needs no I/O (the memory store does),
    /// saving the boxed future; `None` (the default): use [`Store::acquire_leased`].
    fn try_acquire_local(&self, now: u64, lease: u64, charges: &[Charge]) -> Option<Admission> {
        let _ = (now, lease, charges);
        None
    }

    /// Applies corrections at once when the store needs no I/O; `false` (the default):
    /// use [`Store::settle`].
    fn try_settle_local(&self, now: u64, lease: u64, adjust: &[Adjust<'_>]) -> bool {
        let _ = (now, lease, adjust);
        false
    }

    /// [`Store::acquire`] with the request's lease id, for stores that track in-flight
    /// requests individually (so a dead replica's leases expire). Defaults to `acquire`.
    fn acquire_leased<'a>(
        &'a self,
        now: u64,
        lease: u64,
        charges: &'a [Charge],
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        let _ = lease;
        self.acquire(now, charges)
    }
}

#[derive(Clone, Copy, Debug)]
enum Cell {
    Rate(Meter),
    InFlight(u64),
}

const SHARDS: usize = 64;
const SWEEP_EVERY: u32 = 4096;

type Hasher = foldhash::fast::RandomState;

struct Shard {
    cells: HashMap<Box<str>, Cell, Hasher>,
    ops: u32,
}

/// The in-process store: meters in 64 shards, each behind its own mutex, picked by the
/// key's hash; a check locks only the shards its keys live in (in index order, so checks
/// never deadlock), never the whole map. Full meters are swept out as shards are used.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: Hasher,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard cannot leave a meter half-written (each write is one
    // assignment), so a poisoned shard is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        cells: HashMap::with_hasher(Hasher::default()),
                        ops: 0,
                    })
                })
                .collect(),
            hasher: Hasher::default(),
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// Number of meters held (full meters not yet swept included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).cells.len()).sum()
    }

    /// Whether no meter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous check behind [`Store::acquire`].
    pub fn acquire_now(&self, now: u64, charges: &[Charge]) -> Admission {
        // Shards in index order, each locked once.
        let mut idx: SmallVec<[usize; 8]> = charges.iter().map(|c| self.shard_of(&c.key)).collect();
        let mut order = idx.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: SmallVec<[MutexGuard<'_, Shard>; 8]> =
            order.iter().map(|&i| lock(&self.shards[i])).collect();
        for i in &mut idx {
            *i = order.binary_search(i).unwrap_or(0);
        }
        let mut standings = Vec::with_capacity(charges.len());
        let mut next: SmallVec<[Cell; 8]> = SmallVec::with_capacity(charges.len());
        let mut denied = None;
        for (n, c) in charges.iter().enumerate() {
            let cell = guards[idx[n]].cells.get(c.key.as_str()).copied();
            // A key spent twice in one check sees its own earlier spend.
            let cell = (0..n)
                .rev()
                .find(|&j| charges[j].key == c.key)
                .map(|j| next[j])
                .or(cell);
            match (c.gauge, cell) {
                (Gauge::Rate(rate), cell) => {
                    let m = match cell {
                        Some(Cell::Rate(m)) => m,
                        _ => Meter::default(),
                    };
                    match m.try_spend(&rate, now, c.cost) {
                        Ok(m2) => {
                            standings.push(m2.standing(&rate, now));
                            next.push(Cell::Rate(m2));
                        }
                        Err(wait) => {
                            standings.push(m.standing(&rate, now));
                            next.push(Cell::Rate(m));
                            denied.get_or_insert((n, wait));
                        }
                    }
                }
                (Gauge::InFlight { max, .. }, cell) => {
                    let count = match cell {
                        Some(Cell::InFlight(k)) => k,
                        _ => 0,
                    };
                    let standing = |k: u64| Standing {
                        limit: max,
                        remaining: max.saturating_sub(k),
                        reset: Duration::ZERO,
                    };
                    if count + c.cost <= max || c.cost == 0 {
                        standings.push(standing(count + c.cost));
                        next.push(Cell::InFlight(count + c.cost));
                    } else {
                        standings.push(standing(count));
                        next.push(Cell::InFlight(count));
                        // No time is known for a release; a second is a hint.
                        let wait = (c.cost <= max).then_some(Duration::from_secs(1));
                        denied.get_or_insert((n, wait));
                    }
                }
            }
        }
        if let Some((index, retry_after)) = denied {
            return Admission::Denied {
                index,
                retry_after,
                standings,
            };
        }
        for (n, c) in charges.iter().enumerate() {
            let shard = &mut guards[idx[n]];
            match shard.cells.get_mut(c.key.as_str()) {
                Some(cell) => *cell = next[n],
                None => {
                    shard.cells.insert(c.key.as_str().into(), next[n]);
                }
            }
        }
        for g in &mut guards {
            sweep(g, now, charges);
        }
        Admission::Admitted(standings)
    }

    /// The synchronous correction behind [`Store::settle`].
    pub fn settle_now(&self, now: u64, adjust: &[Adjust<'_>]) {
        for a in adjust {
            let mut shard = lock(&self.shards[self.shard_of(a.key)]);
            let Some(cell) = shard.cells.get_mut(a.key) else {
                // Forgotten because it was full: a refund has nothing to give back to, an
                // extra charge starts a fresh meter.
                if let (Gauge::Rate(rate), true) = (a.gauge, a.delta > 0) {
                    let m = Meter::default().adjust(&rate, now, a.delta);
                    shard.cells.insert(a.key.into(), Cell::Rate(m));
                }
                continue;
            };
            match (a.gauge, *cell) {
                (Gauge::Rate(rate), Cell::Rate(m)) => {
                    *cell = Cell::Rate(m.adjust(&rate, now, a.delta))
                }
                (Gauge::InFlight { .. }, Cell::InFlight(k)) => {
                    *cell = Cell::InFlight(k.saturating_sub(1))
                }
                // The limit changed kind under the same key: start over.
                (Gauge::Rate(_), Cell::InFlight(_)) | (Gauge::InFlight { .. }, Cell::Rate(_)) => {
                    shard.cells.remove(a.key);
                }
            }
        }
    }
}

/// Every few thousand operations on a shard, forget its meters that are full again. A
/// meter's rate is not stored with it, so fullness is judged by the rate of the charges at
/// hand when the key matches, else by an exhausted debt clock (debt 0 at `now`).
fn sweep(shard: &mut Shard, now: u64, charges: &[Charge]) {
    shard.ops += 1;
    if shard.ops < SWEEP_EVERY {
        return;
    }
    shard.ops = 0;
    shard.cells.retain(|key, cell| match cell {
        Cell::InFlight(k) => *k > 0,
        Cell::Rate(m) => match charges.iter().find(|c| *c.key == **key) {
            Some(Charge {
                gauge: Gauge::Rate(rate),
                ..
            }) => !m.is_full(rate, now),
            // Without its rate, a meter is kept while it could still hold debt: the debt is
            // paid at no less than 1 scaled unit per microsecond.
            _ => m.debt > u128::from(now.saturating_sub(m.at)),
        },
    });
}

impl Store for MemoryStore {
    fn acquire<'a>(
        &'a self,
        now: u64,
        charges: &'a [Charge],
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        let out = self.acquire_now(now, charges);
        Box::pin(std::future::ready(Ok(out)))
    }

    fn settle<'a>(
        &'a self,
        now: u64,
        _lease: u64,
        adjust: &'a [Adjust<'a>],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.settle_now(now, adjust);
        Box::pin(std::future::ready(Ok(())))
    }

    fn try_acquire_local(&self, now: u64, _lease: u64, charges: &[Charge]) -> Option<Admission> {
        Some(self.acquire_now(now, charges))
    }

    fn try_settle_local(&self, now: u64, _lease: u64, adjust: &[Adjust<'_>]) -> bool {
        self.settle_now(now, adjust);
        true
    }
}
