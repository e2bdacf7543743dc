//! What budgets exist: [`Budget`], [`Scope`] and [`BudgetPolicy`].

use crate::money::Usd;
use crate::window::{Calendar, Period};
use ai_core::{CredentialId, Principal};
use http::HeaderName;
use std::sync::Arc;

/// Whom a budget is kept for: one budget per value of this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Each caller (`Principal::subject`).
    Subject,
    /// Each team (`Principal::team`; callers without a team are not held to it).
    Team,
    /// Each tenant (`Principal::tenant`).
    Tenant,
    /// Each project or cost centre, named by the request's project header (requests
    /// without the header are not held to it).
    Project,
    /// Each gateway key (`CredentialId`).
    Key,
    /// One budget for all traffic through the gateway.
    Global,
}

impl Scope {
    /// `subject`, `team`, `tenant`, `project`, `key`, `global`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Subject => "subject",
            Scope::Team => "team",
            Scope::Tenant => "tenant",
            Scope::Project => "project",
            Scope::Key => "key",
            Scope::Global => "global",
        }
    }

    /// Parses [`Scope::as_str`]'s names (`user` is `subject`, `cost_centre` is `project`).
    pub fn from_name(s: &str) -> Option<Scope> {
        Some(match s {
            "subject" | "user" => Scope::Subject,
            "team" => Scope::Team,
            "tenant" => Scope::Tenant,
            "project" | "cost_centre" | "cost_center" => Scope::Project,
            "key" => Scope::Key,
            "global" => Scope::Global,
            _ => return None,
        })
    }

    /// This scope's owner for a request, if it has one.
    pub(crate) fn owner<'a>(
        self,
        principal: Option<&'a Principal>,
        credential: Option<&'a CredentialId>,
        project: Option<&'a str>,
    ) -> Option<&'a str> {
        match self {
            Scope::Subject => principal.map(|p| &*p.subject),
            Scope::Team => principal.and_then(|p| p.team.as_deref()),
            Scope::Tenant => principal.and_then(|p| p.tenant.as_deref()),
            Scope::Project => project,
            Scope::Key => credential.map(|c| &*c.0),
            Scope::Global => Some("all"),
        }
    }
}

/// One spending cap: `cap` dollars per `period`, for each owner of `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// A name, unique in the policy: it is in refusals, alerts and store keys.
    pub name: Arc<str>,
    /// Whom it is kept for.
    pub scope: Scope,
    /// The cap per owner and window.
    pub cap: Usd,
    /// The window.
    pub period: Period,
    /// Admit a stream with what is left even when that is less than its upper bound, and
    /// end it cleanly (`stop_reason: "budget_exceeded"`) when its running cost reaches
    /// what was held. Without it a request must fit whole. Default off.
    pub cut_off: bool,
    /// Alert thresholds in percent of the cap; `None` uses the policy's.
    pub thresholds: Option<Vec<u8>>,
}

impl Budget {
    /// A budget of `cap` per `period` for each owner of `scope`.
    pub fn new(name: &str, scope: Scope, cap: Usd, period: Period) -> Self {
        Budget {
            name: name.into(),
            scope,
            cap,
            period,
            cut_off: false,
            thresholds: None,
        }
    }

    /// Turns the mid-stream cut-off on or off.
    pub fn cut_off(mut self, on: bool) -> Self {
        self.cut_off = on;
        self
    }

    /// Alert thresholds for this budget, in percent.
    pub fn thresholds(mut self, percents: Vec<u8>) -> Self {
        self.thresholds = Some(percents);
        self
    }
}

/// Every budget, the calendar windows are cut in, the project header and the default
/// alert thresholds.
#[derive(Clone, Debug)]
pub struct BudgetPolicy {
    /// The budgets; a request is held against every one that applies to it.
    pub budgets: Vec<Budget>,
    /// The time zone of daily and monthly windows. Default UTC.
    pub calendar: Calendar,
    /// The header naming a request's project or cost centre. Default
    /// `x-gateway-project`.
    pub project_header: HeaderName,
    /// Alert thresholds in percent of each cap. Default 80 and 100.
    pub thresholds: Vec<u8>,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        BudgetPolicy {
            budgets: Vec::new(),
            calendar: Calendar::utc(),
            project_header: HeaderName::from_static("x-gateway-project"),
            thresholds: vec![80, 100],
        }
    }
}

impl BudgetPolicy {
    /// A policy with these budgets and the defaults.
    pub fn new(budgets: Vec<Budget>) -> Self {
        BudgetPolicy {
            budgets,
            ..BudgetPolicy::default()
        }
    }

    /// Windows in this calendar.
    pub fn calendar(mut self, c: Calendar) -> Self {
        self.calendar = c;
        self
    }
}

/// A store key: `aib:{<scope>:<owner>}:<budget>:<window>`. The hash tag keeps every
/// budget of one owner in one Redis Cluster slot; braces and `%` in names are escaped so
/// an owner cannot change the tag.
pub(crate) fn store_key(scope: Scope, owner: &str, budget: &str, window: &str) -> String {
    let mut k = String::with_capacity(16 + owner.len() + budget.len() + window.len());
    k.push_str("aib:{");
    k.push_str(scope.as_str());
    k.push(':');
    escape_into(&mut k, owner);
    k.push_str("}:");
    escape_into(&mut k, budget);
    k.push(':');
    k.push_str(window);
    k
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tag_the_owner_and_escape_braces() {
        assert_eq!(
            store_key(Scope::Team, "eng", "monthly", "2026-12"),
            "aib:{team:eng}:monthly:2026-12"
        );
        assert_eq!(
            store_key(Scope::Subject, "a}b{%", "x", "all"),
            "aib:{subject:a%7Db%7B%25}:x:all"
        );
    }
}
