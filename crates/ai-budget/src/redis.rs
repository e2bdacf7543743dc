//! [`RedisStore`]: budgets shared by every gateway replica through one Redis or Valkey
//! node ([`RedisStore::connect`]) or a Redis Cluster ([`RedisStore::connect_cluster`]).
//!
//! A reserve is ONE Lua script over every budget of a hash slot, and so is a settle:
//! Redis runs a script atomically, so two replicas can never both take the last dollar.
//! Each budget is a hash (`s` spent, `r` reserved, in nano-dollars; Lua compares them as
//! doubles, exact up to 2^53 nano-dollars, about $9 million per window) that expires when
//! its window has ended. Amounts reach `HINCRBY` as integer text (`%d`): Redis 7.2.0 to
//! 7.2.4 write a round Lua number such as 1e8 as `1e+8`, which `HINCRBY` refuses.
//!
//! Keys carry a hash tag (`{team:eng}`: every window and budget of one team share a slot).
//! On one node a request's budgets are reserved in one script, whatever their tags. On a
//! Cluster, budgets of several tags are reserved one script per tag; when a later
//! tag refuses, the earlier ones are given back, and when a later flexible budget grants
//! less, the earlier ones give back the difference.

use crate::store::{Hold, Reservation, Settle, Standing, Store, StoreError};
use ai_core::cluster::group_by_tag;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

const RESERVE: &str = r"
local want = tonumber(ARGV[1])
local min = tonumber(ARGV[2])
local n = #KEYS
local s, r, cap = {}, {}, {}
local amount = want
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  s[i] = tonumber(v[1] or '0')
  r[i] = tonumber(v[2] or '0')
  cap[i] = tonumber(ARGV[2 + (i - 1) * 3 + 1])
  local avail = math.max(0, cap[i] - s[i] - r[i])
  if ARGV[2 + (i - 1) * 3 + 2] == '1' and avail < amount then amount = avail end
end
local need = math.max(amount, min)
local out = {0, amount}
for i = 1, n do
  if out[1] == 0 and math.max(0, cap[i] - s[i] - r[i]) < need then out[1] = i end
end
for i = 1, n do
  if out[1] == 0 then
    r[i] = redis.call('HINCRBY', KEYS[i], 'r', string.format('%d', amount))
    local ends = tonumber(ARGV[2 + (i - 1) * 3 + 3])
    if ends > 0 then redis.call('PEXPIREAT', KEYS[i], ends) end
  end
  out[#out + 1] = s[i]
  out[#out + 1] = r[i]
end
return out
";

const SETTLE: &str = r"
local out = {}
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local r = redis.call('HINCRBY', KEYS[i], 'r', string.format('%d', -tonumber(ARGV[b + 1])))
  if r < 0 then redis.call('HSET', KEYS[i], 'r', 0) end
  local spend = tonumber(ARGV[b + 2])
  local after = redis.call('HINCRBY', KEYS[i], 's', ARGV[b + 2])
  local ends = tonumber(ARGV[b + 3])
  if ends > 0 then redis.call('PEXPIREAT', KEYS[i], ends) end
  out[#out + 1] = after - spend
  out[#out + 1] = after
end
return out
";

const READ: &str = r"
local out = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  out[#out + 1] = tonumber(v[1] or '0')
  out[#out + 1] = tonumber(v[2] or '0')
end
return out
";

/// Budgets shared through Redis: every replica pointed at the same Redis (one node, or a
/// Redis Cluster) enforces one set of budgets. Built lazily: the gateway starts while
/// Redis is down and each request reports the failure (the layer then refuses with a 503
/// or, when configured, lets calls through unbudgeted).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    timeout: Duration,
    reserve: redis::Script,
    settle: redis::Script,
    read: redis::Script,
}

#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(Arc<ClusterSlot>),
}

struct ClusterSlot {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.conn {
            Conn::Node(_) => "node",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

impl RedisStore {
    /// A store on `url` (`redis://host:port/db`, `rediss://` for TLS), answering within
    /// `timeout` per command or failing. Must be called inside a tokio runtime.
    pub fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
        Ok(RedisStore::with(Conn::Node(conn), timeout))
    }

    /// A store on a Redis Cluster, found from any of its `nodes` (`redis://host:port`).
    pub fn connect_cluster(nodes: &[&str], timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::cluster::ClusterClient::builder(nodes.iter().copied())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .build()
            .map_err(err)?;
        Ok(RedisStore::with(
            Conn::Cluster(Arc::new(ClusterSlot {
                client,
                conn: tokio::sync::OnceCell::new(),
            })),
            timeout,
        ))
    }

    fn with(conn: Conn, timeout: Duration) -> Self {
        RedisStore {
            conn,
            timeout,
            reserve: redis::Script::new(RESERVE),
            settle: redis::Script::new(SETTLE),
            read: redis::Script::new(READ),
        }
    }

    async fn invoke(&self, inv: &redis::ScriptInvocation<'_>) -> Result<Vec<i64>, StoreError> {
        match &self.conn {
            Conn::Node(c) => inv.invoke_async(&mut c.clone()).await.map_err(err),
            Conn::Cluster(slot) => {
                let connect = async {
                    tokio::time::timeout(self.timeout * 4, slot.client.get_async_connection())
                        .await
                        .map_err(|_| StoreError("no cluster node answered in time".to_owned()))?
                        .map_err(err)
                };
                let conn = slot.conn.get_or_try_init(|| connect).await?;
                inv.invoke_async(&mut conn.clone()).await.map_err(err)
            }
        }
    }

    async fn reserve_group(
        &self,
        holds: &[&Hold],
        want: u64,
        min: u64,
    ) -> Result<(usize, u64, Vec<Standing>), StoreError> {
        let mut inv = self.reserve.prepare_invoke();
        inv.arg(want).arg(min);
        for h in holds {
            inv.key(h.key.as_str())
                .arg(h.cap)
                .arg(u8::from(h.flexible))
                .arg(h.expires_us.map_or(0, |us| us.div_ceil(1000)));
        }
        let out = self.invoke(&inv).await?;
        if out.len() != 2 + 2 * holds.len() {
            return Err(StoreError(format!(
                "unexpected reply of {} values",
                out.len()
            )));
        }
        Ok((
            out[0].max(0) as usize,
            out[1].max(0) as u64,
            pairs(&out[2..]),
        ))
    }

    async fn settle_group(&self, items: &[&Settle]) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut inv = self.settle.prepare_invoke();
        for it in items {
            inv.key(it.key.as_str())
                .arg(it.release)
                .arg(it.spend)
                .arg(it.expires_us.map_or(0, |us| us.div_ceil(1000)));
        }
        let out = self.invoke(&inv).await?;
        Ok(pairs(&out)
            .into_iter()
            .map(|s| (s.spent, s.reserved))
            .collect())
    }
}

fn pairs(v: &[i64]) -> Vec<Standing> {
    v.chunks(2)
        .map(|c| Standing {
            spent: c[0].max(0) as u64,
            reserved: c.get(1).copied().unwrap_or(0).max(0) as u64,
        })
        .collect()
}

impl Store for RedisStore {
    fn reserve<'a>(
        &'a self,
        holds: &'a [Hold],
        want: u64,
        min: u64,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(async move {
            let mut standings = vec![Standing::default(); holds.len()];
            // (indices, amount held) of the groups done so far.
            let mut done: Vec<(Vec<usize>, u64)> = Vec::new();
            let mut amount = want;
            // Groups with a flexible budget first: they set the amount the others must
            // hold, so no fixed budget is checked against more than is granted.
            let mut groups = self.groups(holds, |h| h.key.as_str());
            groups.sort_by_key(|g| !g.iter().any(|&i| holds[i].flexible));
            for idx in groups {
                let group: Vec<&Hold> = idx.iter().map(|&i| &holds[i]).collect();
                let (denied, got, st) = match self.reserve_group(&group, amount, min).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.undo(holds, &done, 0).await;
                        return Err(e);
                    }
                };
                for (k, s) in idx.iter().zip(st) {
                    standings[*k] = s;
                }
                if denied > 0 {
                    self.undo(holds, &done, 0).await;
                    return Ok(Reservation::Denied {
                        index: idx[denied - 1],
                        standings,
                    });
                }
                amount = got;
                done.push((idx, got));
            }
            // A later flexible budget granted less: the earlier groups keep only that.
            if done.iter().any(|(_, got)| *got > amount) {
                self.undo(holds, &done, amount).await;
                for (idx, got) in &done {
                    for &i in idx {
                        standings[i].reserved = standings[i].reserved.saturating_sub(got - amount);
                    }
                }
            }
            Ok(Reservation::Granted { amount, standings })
        })
    }

    fn settle<'a>(
        &'a self,
        items: &'a [Settle],
    ) -> BoxFuture<'a, Result<Vec<(u64, u64)>, StoreError>> {
        Box::pin(async move {
            let mut out = vec![(0, 0); items.len()];
            let mut failed = None;
            // A group that fails does not stop the others from settling.
            for idx in self.groups(items, |s| s.key.as_str()) {
                let group: Vec<&Settle> = idx.iter().map(|&i| &items[i]).collect();
                match self.settle_group(&group).await {
                    Ok(v) => {
                        for (k, v) in idx.iter().zip(v) {
                            out[*k] = v;
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
    }

    fn read<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Standing>, StoreError>> {
        Box::pin(async move {
            let mut out = vec![Standing::default(); keys.len()];
            for idx in self.groups(keys, String::as_str) {
                let mut inv = self.read.prepare_invoke();
                for &i in &idx {
                    inv.key(keys[i].as_str());
                }
                for (k, s) in idx.iter().zip(pairs(&self.invoke(&inv).await?)) {
                    out[*k] = s;
                }
            }
            Ok(out)
        })
    }
}

impl RedisStore {
    /// The scripts to run: on one node every key goes in one script (one round trip);
    /// on a Cluster, one script per hash tag.
    fn groups<T>(&self, items: &[T], key: impl Fn(&T) -> &str) -> Vec<Vec<usize>> {
        match self.conn {
            Conn::Node(_) => vec![(0..items.len()).collect()],
            Conn::Cluster(_) => group_by_tag(items, key),
        }
    }

    /// Gives back what the groups in `done` hold above `keep`.
    async fn undo(&self, holds: &[Hold], done: &[(Vec<usize>, u64)], keep: u64) {
        let items: Vec<Settle> = done
            .iter()
            .flat_map(|(idx, got)| {
                idx.iter().map(move |&i| Settle {
                    key: holds[i].key.clone(),
                    release: got.saturating_sub(keep),
                    spend: 0,
                    expires_us: holds[i].expires_us,
                })
            })
            .filter(|s| s.release > 0)
            .collect();
        if items.is_empty() {
            return;
        }
        if let Err(e) = Store::settle(self, &items).await {
            tracing::warn!(target: "ai_budget", error = %e, "could not give back a partial budget reservation");
        }
    }
}
