//! Where spend is kept: the [`Store`] trait, and [`MemoryStore`], in this process and
//! saved to a file so a restart does not reset a monthly budget.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One budget a request is held against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The store key of the budget's current window.
    pub key: String,
    /// The cap, in nano-dollars.
    pub cap: u64,
    /// Whether this budget may grant less than the request's upper bound (it cuts the
    /// stream off at what it granted).
    pub flexible: bool,
    /// When the window ends (microseconds since the epoch): the key may be dropped after.
    pub expires_us: Option<u64>,
}

/// A budget's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Settled spend in the window, nano-dollars.
    pub spent: u64,
    /// Held by requests in flight, nano-dollars.
    pub reserved: u64,
}

impl Standing {
    /// What is left under `cap` for new requests.
    pub fn available(&self, cap: u64) -> u64 {
        cap.saturating_sub(self.spent.saturating_add(self.reserved))
    }
}

/// The answer to [`Store::reserve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// `amount` is held against every budget (the upper bound, or less when a flexible
    /// budget had less left); `standings` are after the hold.
    Granted {
        /// Nano-dollars held.
        amount: u64,
        /// Each budget after the hold, in the order of the holds.
        standings: Vec<Standing>,
    },
    /// Nothing was held: budget `index` had less than the request needs.
    Denied {
        /// The first budget that refused.
        index: usize,
        /// Each budget as it was.
        standings: Vec<Standing>,
    },
}

/// Settling one budget: give back `release` of the hold, add `spend`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settle {
    /// The budget's key.
    pub key: String,
    /// Nano-dollars of the reservation to give back.
    pub release: u64,
    /// Nano-dollars really spent.
    pub spend: u64,
    /// When the window ends.
    pub expires_us: Option<u64>,
}

/// The error of a store that cannot be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "budget store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Keeps spend and reservations per budget key, atomically: two requests can never both
/// take the last dollar.
pub trait Store: Send + Sync + 'static {
    /// Holds an amount against every budget in `holds`, or nothing. The amount is `want`,
    /// lowered to what the flexible budgets have left; each budget must have at least
    /// the amount available and the amount must be at least `min`.
    fn reserve<'a>(
        &'a self,
        holds: &'a [Hold],
        want: u64,
        min: u64,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>>;

    /// Settles: per budget, gives back `release` of its hold and adds `spend`. Returns
    /// each budget's spend before and after (for alerts: exactly one settle crosses a
    /// threshold).
    fn settle<'a>(
        &'a self,
        items: &'a [Settle],
    ) -> BoxFuture<'a, Result<Vec<(u64, u64)>, StoreError>>;

    /// Reads budgets without changing them.
    fn read<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Standing>, StoreError>>;

    /// The store as a [`MemoryStore`], when it is one: the layer then reserves and settles
    /// without a future or a task.
    fn memory(&self) -> Option<&MemoryStore> {
        None
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Entry {
    spent: u64,
    #[serde(skip)]
    reserved: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_us: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    budgets: HashMap<String, Entry>,
}

/// Budgets in this process. With [`MemoryStore::open`] the spend is saved to a file
/// ([`MemoryStore::save`], on an interval with [`MemoryStore::save_every`], and at
/// shutdown by the gateway) and read back at start, so a restart does not reset a
/// monthly budget. Reservations of requests in flight are not saved: a process that dies
/// mid-request loses that request's spend, and nothing stays held.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    path: Option<Arc<PathBuf>>,
    /// One save at a time (the interval saver and the shutdown save).
    saving: Arc<Mutex<()>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store that forgets everything when the process ends.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store saved to `path`: the spend saved there is read now (a missing file is an
    /// empty store; an unreadable one is an error, so a typo never resets budgets).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let budgets = match std::fs::read(&path) {
            Ok(bytes) => {
                let saved: SavedState = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError(format!(
                        "cannot read the saved spend in {}: {e}",
                        path.display()
                    ))
                })?;
                if saved.version != 1 {
                    return Err(StoreError(format!(
                        "{} was saved by a newer version (format {})",
                        path.display(),
                        saved.version
                    )));
                }
                saved.budgets
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                return Err(StoreError(format!("cannot read {}: {e}", path.display())));
            }
        };
        Ok(MemoryStore {
            inner: Arc::new(Mutex::new(budgets)),
            path: Some(Arc::new(path)),
            saving: Arc::default(),
        })
    }

    /// Where the spend is saved, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(PathBuf::as_path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the spend to the file (a temporary file, synced, renamed over it, so a
    /// crash or a power cut leaves the old or the new state, never half of one). Windows that ended before `now_us`
    /// are dropped. Nothing to do without a path.
    pub fn save(&self, now_us: u64) -> Result<(), StoreError> {
        let Some(path) = self.path.as_deref() else {
            return Ok(());
        };
        let budgets: HashMap<String, Entry> = {
            let mut map = self.lock();
            map.retain(|_, e| e.reserved > 0 || e.expires_us.is_none_or(|end| end > now_us));
            map.iter()
                .filter(|(_, e)| e.spent > 0)
                .map(|(k, e)| (k.clone(), *e))
                .collect()
        };
        let json = serde_json::to_vec(&SavedState {
            version: 1,
            budgets,
        })
        .map_err(|e| StoreError(e.to_string()))?;
        let _one = self
            .saving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            // On disk before the rename, and the rename on disk after it: a power cut
            // leaves the old file or the new one, never an empty one.
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
        };
        write().map_err(|e| StoreError(format!("cannot save to {}: {e}", path.display())))
    }

    /// Saves every `interval` on a task of the current runtime, with the time from
    /// `clock`, until the returned handle is aborted.
    pub fn save_every(
        &self,
        interval: Duration,
        clock: ai_core::Clock,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = store.clone();
                let now = clock.now_us();
                let saved = tokio::task::spawn_blocking(move || s.save(now)).await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!(target: "ai_budget", error = %e, "could not save budget spend");
                }
            }
        })
    }

    /// [`Store::reserve`] without a future.
    pub fn reserve_now(&self, holds: &[Hold], want: u64, min: u64) -> Reservation {
        let mut map = self.lock();
        let mut standings: Vec<Standing> = holds
            .iter()
            .map(|h| {
                map.get(&h.key).map_or(Standing::default(), |e| Standing {
                    spent: e.spent,
                    reserved: e.reserved,
                })
            })
            .collect();
        match grant(holds, &standings, want, min) {
            Err(index) => Reservation::Denied { index, standings },
            Ok(amount) => {
                for (h, s) in holds.iter().zip(&mut standings) {
                    let e = entry(&mut map, &h.key);
                    e.reserved = e.reserved.saturating_add(amount);
                    e.expires_us = h.expires_us;
                    s.reserved = e.reserved;
                }
                Reservation::Granted { amount, standings }
            }
        }
    }

    /// [`Store::settle`] without a future.
    pub fn settle_now(&self, items: &[Settle]) -> Vec<(u64, u64)> {
        let mut map = self.lock();
        items
            .iter()
            .map(|it| {
                let e = entry(&mut map, &it.key);
                e.reserved = e.reserved.saturating_sub(it.release);
                let before = e.spent;
                e.spent = e.spent.saturating_add(it.spend);
                if e.expires_us.is_none() {
                    e.expires_us = it.expires_us;
                }
                (before, e.spent)
            })
            .collect()
    }

    /// [`Store::read`] without a future.
    pub fn read_now(&self, keys: &[String]) -> Vec<Standing> {
        let map = self.lock();
        keys.iter()
            .map(|k| {
                map.get(k).map_or(Standing::default(), |e| Standing {
                    spent: e.spent,
                    reserved: e.reserved,
                })
            })
            .collect()
    }
}

/// The entry of `key`, made when missing (the key is copied only then).
fn entry<'m>(map: &'m mut HashMap<String, Entry>, key: &str) -> &'m mut Entry {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), Entry::default());
    }
    map.get_mut(key).expect("just inserted")
}

/// The amount to hold, or the index of the budget that refuses.
pub(crate) fn grant(
    holds: &[Hold],
    standings: &[Standing],
    want: u64,
    min: u64,
) -> Result<u64, usize> {
    let mut amount = want;
    for (h, s) in holds.iter().zip(standings) {
        if h.flexible {
            amount = amount.min(s.available(h.cap));
        }
    }
    let need = amount.max(min);
    match holds
        .iter()
        .zip(standings)
        .position(|(h, s)| s.available(h.cap) < need)
    {
        Some(i) => Err(i),
        None => Ok(amount),
    }
}

impl Store for MemoryStore {
    fn reserve<'a>(
        &'a self,
        holds: &'a [Hold],
        want: u64,
        min: u64,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(std::future::ready(Ok(self.reserve_now(holds, want, min))))
    }

    fn settle<'a>(
        &'a self,
        items: &'a [Settle],
    ) -> BoxFuture<'a, Result<Vec<(u64, u64)>, StoreError>> {
        Box::pin(std::future::ready(Ok(self.settle_now(items))))
    }

    fn read<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Standing>, StoreError>> {
        Box::pin(std::future::ready(Ok(self.read_now(keys))))
    }

    fn memory(&self) -> Option<&MemoryStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(key: &str, cap: u64, flexible: bool) -> Hold {
        Hold {
            key: key.into(),
            cap,
            flexible,
            expires_us: None,
        }
    }

    #[test]
    fn a_flexible_budget_grants_what_it_has_left_down_to_the_minimum() {
        let s = MemoryStore::new();
        let holds = [hold("a", 100, true), hold("b", 1000, false)];
        let Reservation::Granted { amount, .. } = s.reserve_now(&holds, 80, 10) else {
            panic!("granted")
        };
        assert_eq!(amount, 80);
        let Reservation::Granted { amount, .. } = s.reserve_now(&holds, 80, 10) else {
            panic!("granted")
        };
        assert_eq!(amount, 20, "what a has left");
        assert!(matches!(
            s.reserve_now(&holds, 80, 10),
            Reservation::Denied { index: 0, .. }
        ));
        s.settle_now(&[Settle {
            key: "a".into(),
            release: 80,
            spend: 5,
            expires_us: None,
        }]);
        assert_eq!(
            s.read_now(&["a".into()]),
            vec![Standing {
                spent: 5,
                reserved: 20
            }]
        );
    }

    #[test]
    fn a_fixed_budget_needs_the_whole_amount() {
        let s = MemoryStore::new();
        let holds = [hold("a", 100, false)];
        assert!(matches!(
            s.reserve_now(&holds, 101, 101),
            Reservation::Denied { index: 0, .. }
        ));
        assert!(matches!(
            s.reserve_now(&holds, 100, 100),
            Reservation::Granted { amount: 100, .. }
        ));
    }

    #[test]
    fn spend_survives_a_restart_and_ended_windows_are_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("spend.json");
        let s = MemoryStore::open(&path).expect("open");
        let mut h = hold("month", 1000, false);
        h.expires_us = Some(2_000);
        let mut old = hold("day", 1000, false);
        old.expires_us = Some(500);
        for hh in [&h, &old] {
            s.reserve_now(std::slice::from_ref(hh), 10, 10);
            s.settle_now(&[Settle {
                key: hh.key.clone(),
                release: 10,
                spend: 7,
                expires_us: hh.expires_us,
            }]);
        }
        s.save(1_000).expect("save");
        let back = MemoryStore::open(&path).expect("reopen");
        assert_eq!(back.read_now(&["month".into()])[0].spent, 7);
        assert_eq!(
            back.read_now(&["day".into()])[0].spent,
            0,
            "its window ended"
        );
        std::fs::write(&path, b"{not json").expect("write");
        assert!(MemoryStore::open(&path).is_err());
    }
}
