//! The price table: per model, what a million tokens of each kind cost, as data.
//!
//! The shipped table (`data/prices.toml`, see [`PriceTable::defaults`]) lists the current
//! Claude models and common OpenAI models, each with the page it was read from and the
//! date or version that page showed. A deployment overrides or extends it from its own
//! TOML ([`PriceTable::merge_toml`]); a model found in neither is refused or priced as a
//! named fallback ([`UnknownModel`]), never free.
//!
//! ```
//! use ai_budget::{PriceTable, Usd};
//! use ai_core::Usage;
//!
//! let table = PriceTable::defaults();
//! let sonnet = table.price("claude-sonnet-4-5-20250929").expect("listed");
//! let usage = Usage { input_tokens: Some(1_000), output_tokens: Some(100), ..Default::default() };
//! // 1,000 x $3/M + 100 x $15/M = $0.0045
//! assert_eq!(sonnet.cost(&usage), "0.0045".parse::<Usd>().unwrap());
//! ```

use crate::money::{Rate, Usd, pico_to_usd};
use ai_core::Usage;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Prices of one kind of traffic, per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// Input tokens neither read from nor written to the prompt cache.
    pub input: Rate,
    /// Output tokens (thinking included).
    pub output: Rate,
    /// Input written to a 5-minute cache entry (default: `input`).
    #[serde(default)]
    pub cache_write_5m: Option<Rate>,
    /// Input written to a 1-hour cache entry (default: the 5-minute write price).
    #[serde(default)]
    pub cache_write_1h: Option<Rate>,
    /// Input read from the cache (default: `input`).
    #[serde(default)]
    pub cache_read: Option<Rate>,
}

impl Rates {
    fn cw5m(&self) -> Rate {
        self.cache_write_5m.unwrap_or(self.input)
    }
    fn cw1h(&self) -> Rate {
        self.cache_write_1h.unwrap_or(self.cw5m())
    }
    fn read(&self) -> Rate {
        self.cache_read.unwrap_or(self.input)
    }
}

/// A higher tariff for requests whose whole input (uncached + cache writes + cache
/// reads) is over `above` tokens: every token of such a request is billed at `rates`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContext {
    /// The threshold, in input tokens.
    pub above: u64,
    /// The rates over it.
    #[serde(flatten)]
    pub rates: Rates,
}

/// What one model costs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Standard rates.
    #[serde(flatten)]
    pub rates: Rates,
    /// The long-context tier, where the vendor prices one.
    #[serde(default)]
    pub long_context: Option<LongContext>,
    /// Percent off for batch traffic (`usage.service_tier == "batch"`), e.g. 50.
    #[serde(default)]
    pub batch_discount: u8,
    /// Percent of the price charged when the answer says `inference_geo: "us"` (e.g. 110
    /// where US-only inference costs 1.1x); absent: no change.
    #[serde(default)]
    pub us_inference: Option<u16>,
    /// Dollars per 1,000 server-side web searches (`usage.server_tool_use`).
    #[serde(default)]
    pub web_search_per_1k: Option<Usd>,
    /// Other names of the model (dated ids, `-latest` aliases).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where the figures were read.
    #[serde(default)]
    pub source: String,
    /// The date or version that source showed.
    #[serde(default)]
    pub as_of: String,
}

/// The parts of `usage` the cost needs beyond the four counts.
#[derive(Default, Deserialize)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_1h_input_tokens: u64,
}

#[derive(Default, Deserialize)]
struct ServerToolUse {
    #[serde(default)]
    web_search_requests: u64,
}

fn extra<'a, T: Deserialize<'a>>(u: &'a Usage, key: &str) -> Option<T> {
    u.extra
        .get(key)
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
}

impl ModelPrice {
    /// The rates for a request with `total_input` input tokens.
    pub fn rates_for(&self, total_input: u64) -> &Rates {
        match &self.long_context {
            Some(lc) if total_input > lc.above => &lc.rates,
            _ => &self.rates,
        }
    }

    /// The exact cost of a response's `usage`: uncached input, 5-minute and 1-hour cache
    /// writes (from `cache_creation`; without that breakdown every write is priced as
    /// 5-minute), cache reads and output, at the long-context rates when the input is
    /// over the threshold, less the batch discount, times the US-inference multiplier,
    /// plus server-side web searches; rounded up to the nano-dollar.
    pub fn cost(&self, usage: &Usage) -> Usd {
        let r = self.rates_for(usage.total_input());
        let written = usage.cache_creation_input_tokens.unwrap_or(0);
        let split: CacheCreation = extra(usage, "cache_creation").unwrap_or_default();
        let one_hour = split.ephemeral_1h_input_tokens.min(written);
        let five_min = written - one_hour;
        let mut pico = r.input.pico(usage.input_tokens.unwrap_or(0))
            + r.cw5m().pico(five_min)
            + r.cw1h().pico(one_hour)
            + r.read().pico(usage.cache_read_input_tokens.unwrap_or(0))
            + r.output.pico(usage.output_tokens.unwrap_or(0));
        if self.batch_discount > 0
            && extra::<String>(usage, "service_tier").as_deref() == Some("batch")
        {
            pico = pico * u128::from(100 - self.batch_discount.min(100)) / 100;
        }
        if let Some(pct) = self.us_inference {
            if extra::<String>(usage, "inference_geo").as_deref() == Some("us") {
                pico = (pico * u128::from(pct)).div_ceil(100);
            }
        }
        let mut cost = pico_to_usd(pico);
        if let Some(per_1k) = self.web_search_per_1k {
            let searches = extra::<ServerToolUse>(usage, "server_tool_use").unwrap_or_default();
            if searches.web_search_requests > 0 {
                let nanos = u128::from(per_1k.0) * u128::from(searches.web_search_requests);
                cost = cost + Usd(u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX));
            }
        }
        cost
    }

    /// The most a request can cost: `input_tokens` at the input price and `max_output`
    /// tokens at the output price (long-context rates when the input is over the
    /// threshold). Cache writes and US-only inference can cost more per token; an
    /// estimate of the input is an estimate, so the settle that follows is what counts.
    pub fn upper_bound(&self, input_tokens: u64, max_output: u64) -> Usd {
        let r = self.rates_for(input_tokens);
        pico_to_usd(r.input.pico(input_tokens) + r.output.pico(max_output))
    }
}

/// What to do with a model the table does not list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UnknownModel {
    /// Refuse the request (400 `invalid_request_error` naming the model). Default.
    #[default]
    Reject,
    /// Price it as this listed model.
    PriceAs(String),
}

/// The error of a price table that does not parse, or of a model without a price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceError(pub String);

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PriceError {}

/// Prices per model id and alias.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    models: HashMap<String, Arc<ModelPrice>>,
    unknown: UnknownModel,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    models: HashMap<String, ModelPrice>,
}

/// The shipped table.
const DEFAULTS: &str = include_str!("../data/prices.toml");

impl PriceTable {
    /// The shipped prices (`data/prices.toml` in this crate): current Claude models and
    /// common OpenAI models, each with its source and date. Unknown models are refused.
    pub fn defaults() -> Self {
        let mut t = PriceTable::default();
        // The shipped file is checked by this crate's tests; an error here is a build bug.
        if let Err(e) = t.merge_toml(DEFAULTS) {
            tracing::error!(target: "ai_budget", error = %e, "the shipped price table does not parse");
        }
        t
    }

    /// An empty table (every model unknown).
    pub fn empty() -> Self {
        PriceTable::default()
    }

    /// Adds or replaces the models of a TOML table (`[models."id"]` sections, the format
    /// of `data/prices.toml`). A model given here replaces the whole entry of the same
    /// id and its aliases.
    pub fn merge_toml(&mut self, text: &str) -> Result<(), PriceError> {
        let file: TableFile =
            toml::from_str(text).map_err(|e| PriceError(format!("price table: {e}")))?;
        for (id, price) in file.models {
            self.insert(id, price);
        }
        Ok(())
    }

    /// Adds or replaces one model (and its aliases). Replacing an id also drops the
    /// aliases of the entry it replaces, so no old alias keeps the old price.
    pub fn insert(&mut self, id: impl Into<String>, price: ModelPrice) {
        let id = id.into();
        if let Some(old) = self.models.get(&id).cloned() {
            self.models.retain(|_, p| !Arc::ptr_eq(p, &old));
        }
        let price = Arc::new(price);
        for alias in &price.aliases {
            self.models.insert(alias.clone(), price.clone());
        }
        self.models.insert(id, price);
    }

    /// What to do with unlisted models; a fallback must itself be listed.
    pub fn set_unknown(&mut self, unknown: UnknownModel) -> Result<(), PriceError> {
        if let UnknownModel::PriceAs(m) = &unknown {
            if !self.models.contains_key(m) {
                return Err(PriceError(format!(
                    "the fallback model {m:?} for unlisted models has no price itself"
                )));
            }
        }
        self.unknown = unknown;
        Ok(())
    }

    /// The listed price of `model` (id or alias), without the fallback.
    pub fn get(&self, model: &str) -> Option<&Arc<ModelPrice>> {
        self.models.get(model)
    }

    /// The price to charge for `model`: listed, or the fallback, or an error that says
    /// so.
    pub fn price(&self, model: &str) -> Result<&Arc<ModelPrice>, PriceError> {
        if let Some(p) = self.models.get(model) {
            return Ok(p);
        }
        match &self.unknown {
            UnknownModel::PriceAs(f) => self
                .models
                .get(f)
                .ok_or_else(|| PriceError(format!("no price for the fallback model {f:?}"))),
            UnknownModel::Reject => Err(PriceError(format!(
                "no price is configured for model {model:?}, so its cost cannot be counted against a budget: use a listed model or ask the gateway operator to add its price"
            ))),
        }
    }

    /// Every listed id and alias.
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models.iter().map(|(k, v)| (k.as_str(), &**v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_every_entry_names_its_source() {
        let mut t = PriceTable::empty();
        t.merge_toml(DEFAULTS).expect("shipped table");
        assert!(t.models().count() > 30);
        for (id, p) in t.models() {
            assert!(p.source.starts_with("http"), "{id} has no source");
            assert!(!p.as_of.is_empty(), "{id} has no date");
            assert!(p.rates.output.0 > 0 && p.rates.input.0 > 0, "{id} is free");
        }
    }

    #[test]
    fn unknown_models_are_refused_or_priced_as_the_fallback() {
        let mut t = PriceTable::defaults();
        assert!(t.price("my-model").is_err());
        assert!(t.set_unknown(UnknownModel::PriceAs("nope".into())).is_err());
        t.set_unknown(UnknownModel::PriceAs("claude-opus-4-1".into()))
            .expect("listed");
        assert_eq!(
            t.price("my-model").expect("fallback").rates.output.0,
            75_000_000
        );
    }
}
