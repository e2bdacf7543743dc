//! [`RedisStore`]: meters shared by every gateway replica through one Redis or Valkey node
//! ([`RedisStore::connect`]) or a Redis Cluster ([`RedisStore::connect_cluster`]).
//!
//! Each check-and-reserve is ONE Lua script (`EVALSHA`), and so is each settle: Redis runs
//! a script atomically, so two replicas can never both take the last unit, and no value is
//! read into Rust and written back. The scripts do the same integer GCRA arithmetic as
//! [`crate::rate`] (debts are written with `%.0f`, exact up to 2^53 scaled units: a
//! rate of 150 million per minute). Every key expires on its own once its meter is full
//! again (rates) or its longest lease ends (in flight).
//!
//! On Redis Cluster a script may only touch keys of one hash slot. Keys carry a hash tag
//! (`{tenant}` for anything within a tenant, `{model:name}` for a model-wide limit), the
//! store runs one script per tag, and when a later group refuses it gives back what the
//! earlier groups reserved. With one tag (the usual case) a check is one round trip.

use crate::rate::Standing;
use crate::store::{Adjust, Admission, Charge, Gauge, Store, StoreError};
use ai_core::cluster::group_by_tag;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

const ACQUIRE: &str = r"
local now = tonumber(ARGV[1])
local lease = ARGV[2]
local state = {}
local at = {}
local out = {0, 0}
-- A meter's debt at now, and the time to write back: never earlier than the stored one,
-- so a replica whose clock lags cannot make a meter pay the same interval back twice.
local function debt_of(key, a)
  local s = redis.call('HMGET', key, 'd', 't')
  if not s[1] then return 0, now end
  local t = tonumber(s[2])
  if now > t then return math.max(0, tonumber(s[1]) - (now - t) * a), now end
  return tonumber(s[1]), t
end
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 5
  local kind = tonumber(ARGV[b])
  local a = tonumber(ARGV[b + 1])
  local p = tonumber(ARGV[b + 2])
  local burst = tonumber(ARGV[b + 3])
  local cost = tonumber(ARGV[b + 4])
  local key = KEYS[i]
  local cur = state[key]
  if kind == 1 then
    if cur == nil then cur, at[key] = debt_of(key, a) end
    local cap = burst * p
    local new = cur + cost * p
    if new > cap and cost > 0 then
      new = cur
      if out[1] == 0 then
        out[1] = i
        if cost > burst then out[2] = -1 else out[2] = math.ceil((cur + cost * p - cap) / a) end
      end
    end
    state[key] = new
    out[#out + 1] = a
    out[#out + 1] = math.floor(math.max(0, cap - new) / p)
    out[#out + 1] = math.ceil(new / a)
  else
    if cur == nil then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now))
      cur = redis.call('ZCARD', key)
    end
    local new = cur + cost
    if new > a and cost > 0 then
      new = cur
      if out[1] == 0 then
        out[1] = i
        if cost > a then out[2] = -1 else out[2] = 1000000 end
      end
    end
    state[key] = new
    out[#out + 1] = a
    out[#out + 1] = math.max(0, a - new)
    out[#out + 1] = 0
  end
end
if out[1] == 0 then
  for i = 1, #KEYS do
    local b = 3 + (i - 1) * 5
    local key = KEYS[i]
    if tonumber(ARGV[b]) == 1 then
      local d = state[key]
      if d > 0 then
        local t = at[key] or now
        redis.call('HSET', key, 'd', string.format('%.0f', d), 't', string.format('%.0f', t))
        redis.call('PEXPIRE', key, math.ceil((d / tonumber(ARGV[b + 1]) + t - now) / 1000) + 1)
      else
        redis.call('DEL', key)
      end
    elseif tonumber(ARGV[b + 4]) > 0 then
      local ttl = tonumber(ARGV[b + 2])
      redis.call('ZADD', key, string.format('%.0f', now + ttl), lease)
      redis.call('PEXPIRE', key, math.ceil(ttl / 1000) + 1)
    end
  end
end
return out
";

const SETTLE: &str = r"
local now = tonumber(ARGV[1])
local lease = ARGV[2]
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 4
  local key = KEYS[i]
  if tonumber(ARGV[b]) == 1 then
    local a = tonumber(ARGV[b + 1])
    local p = tonumber(ARGV[b + 2])
    local delta = tonumber(ARGV[b + 3])
    local s = redis.call('HMGET', key, 'd', 't')
    local d = 0
    local at = now
    if s[1] then
      local t = tonumber(s[2])
      d = tonumber(s[1])
      if now > t then d = math.max(0, d - (now - t) * a) else at = t end
    end
    d = math.max(0, d + delta * p)
    if d > 0 then
      redis.call('HSET', key, 'd', string.format('%.0f', d), 't', string.format('%.0f', at))
      redis.call('PEXPIRE', key, math.ceil((d / a + at - now) / 1000) + 1)
    else
      redis.call('DEL', key)
    end
  else
    redis.call('ZREM', key, lease)
  end
end
return 0
";

/// Limits shared through Redis: every replica pointed at the same Redis (one node, or a
/// Redis Cluster) enforces one set of meters. Built lazily: the gateway starts while Redis
/// is down and each check reports the failure (the layer then fails closed or open as
/// configured).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    timeout: Duration,
    acquire: redis::Script,
    settle: redis::Script,
}

#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(Arc<ClusterSlot>),
}

/// A cluster connection made on first use (and again after a failed attempt).
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

impl RedisStore {
    /// A store on `url` (`redis://host:port/db`, `rediss://` for TLS), answering within
    /// `timeout` per command or failing. Must be called inside a tokio runtime.
    pub fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(RedisStore::with(Conn::Node(conn), timeout))
    }

    /// A store on a Redis Cluster, found from any of its `nodes` (`redis://host:port`).
    /// Each script goes to the node that owns its keys' hash slot.
    pub fn connect_cluster(nodes: &[&str], timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::cluster::ClusterClient::builder(nodes.iter().copied())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .build()
            .map_err(|e| StoreError(e.to_string()))?;
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
            acquire: redis::Script::new(ACQUIRE),
            settle: redis::Script::new(SETTLE),
        }
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let err = |e: redis::RedisError| StoreError(e.to_string());
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

    async fn acquire_group(
        &self,
        now: u64,
        lease: u64,
        charges: &[&Charge],
    ) -> Result<(usize, i64, Vec<Standing>), StoreError> {
        let mut inv = self.acquire.prepare_invoke();
        inv.arg(now).arg(lease);
        for c in charges {
            inv.key(c.key.as_str());
            match c.gauge {
                Gauge::Rate(r) => inv
                    .arg(1)
                    .arg(r.amount.max(1))
                    .arg(r.period_us())
                    .arg(r.burst),
                Gauge::InFlight { max, lease } => inv
                    .arg(2)
                    .arg(max)
                    .arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX).max(1))
                    .arg(0),
            };
            inv.arg(c.cost);
        }
        let out: Vec<i64> = self.invoke(&inv).await?;
        if out.len() != 2 + 3 * charges.len() {
            return Err(StoreError(format!(
                "unexpected reply of {} values",
                out.len()
            )));
        }
        let standings = out[2..]
            .chunks(3)
            .map(|c| Standing {
                limit: c[0].max(0) as u64,
                remaining: c[1].max(0) as u64,
                reset: Duration::from_micros(c[2].max(0) as u64),
            })
            .collect();
        Ok((out[0].max(0) as usize, out[1], standings))
    }

    async fn settle_all(
        &self,
        now: u64,
        lease: u64,
        adjust: &[&Adjust<'_>],
    ) -> Result<(), StoreError> {
        let mut inv = self.settle.prepare_invoke();
        inv.arg(now).arg(lease);
        for a in adjust {
            inv.key(a.key);
            match a.gauge {
                Gauge::Rate(r) => inv.arg(1).arg(r.amount.max(1)).arg(r.period_us()),
                Gauge::InFlight { max, .. } => inv.arg(2).arg(max).arg(0),
            };
            inv.arg(a.delta);
        }
        let _: i64 = self.invoke(&inv).await?;
        Ok(())
    }
}

impl Store for RedisStore {
    fn acquire<'a>(
        &'a self,
        now: u64,
        charges: &'a [Charge],
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        self.acquire_leased(now, 0, charges)
    }

    fn acquire_leased<'a>(
        &'a self,
        now: u64,
        lease: u64,
        charges: &'a [Charge],
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        Box::pin(async move {
            let groups = group_by_tag(charges, |c| c.key.as_str());
            let mut standings = vec![
                Standing {
                    limit: 0,
                    remaining: 0,
                    reset: Duration::ZERO,
                };
                charges.len()
            ];
            let mut done: Vec<usize> = Vec::new();
            for idx in &groups {
                let group: Vec<&Charge> = idx.iter().map(|&i| &charges[i]).collect();
                let (denied, retry, st) = match self.acquire_group(now, lease, &group).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.undo(now, lease, charges, &done).await;
                        return Err(e);
                    }
                };
                for (k, s) in idx.iter().zip(st) {
                    standings[*k] = s;
                }
                if denied > 0 {
                    self.undo(now, lease, charges, &done).await;
                    return Ok(Admission::Denied {
                        index: idx[denied - 1],
                        retry_after: (retry >= 0).then(|| Duration::from_micros(retry as u64)),
                        standings,
                    });
                }
                done.extend(idx);
            }
            Ok(Admission::Admitted(standings))
        })
    }

    fn settle<'a>(
        &'a self,
        now: u64,
        lease: u64,
        adjust: &'a [Adjust<'a>],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for idx in group_by_tag(adjust, |a| a.key) {
                let group: Vec<&Adjust<'_>> = idx.iter().map(|&i| &adjust[i]).collect();
                self.settle_all(now, lease, &group).await?;
            }
            Ok(())
        })
    }
}

impl RedisStore {
    /// Gives back the charges of groups already reserved when a later group refused.
    async fn undo(&self, now: u64, lease: u64, charges: &[Charge], done: &[usize]) {
        if done.is_empty() {
            return;
        }
        let adjust: Vec<Adjust<'_>> = done.iter().map(|&i| charges[i].refund()).collect();
        if let Err(e) = Store::settle(self, now, lease, &adjust).await {
            tracing::warn!(target: "ai_ratelimit", error = %e, "could not give back a partial reservation");
        }
    }
}
