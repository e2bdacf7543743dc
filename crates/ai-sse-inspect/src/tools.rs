//! Tool-call policy: which tools a caller's model may call, and rules on their arguments.
//!
//! A `tool_use` block is held while its `input_json_delta`s stream, parsed at its
//! `content_block_stop`, and checked before any of it reaches the client:
//!
//! - the name against the allow-list (config globs, and the principal's scopes such as
//!   `tool:lookup_customer`);
//! - argument rules: a JSON pointer whose value must equal a field of the principal
//!   (`/tenant_id` must be the caller's tenant), or must be a URL on a domain
//!   allow-list (how a browsing or Computer Use session is kept to allowed sites).
//!
//! ```
//! use ai_core::Principal;
//! use ai_sse_inspect::{PrincipalField, ToolPolicy, ToolRule};
//! use serde_json::json;
//!
//! let tools = ToolPolicy::default()
//!     .allow(["lookup_customer", "browse"])
//!     .rule(ToolRule::equals("lookup_customer", "/tenant_id", PrincipalField::Tenant))
//!     .rule(ToolRule::domains("browse", "/url", ["docs.example.com", "*.example.org"]));
//! let mut p = Principal::new("alice");
//! p.tenant = Some("acme".into());
//!
//! assert!(tools.check("lookup_customer", &json!({"tenant_id": "acme"}), Some(&p)).is_ok());
//! let e = tools.check("lookup_customer", &json!({"tenant_id": "other"}), Some(&p)).expect_err("refused");
//! assert_eq!(e.code, "completion.tool.argument_not_allowed");
//! assert!(tools.check("browse", &json!({"url": "https://a.example.org/x"}), Some(&p)).is_ok());
//! assert!(tools.check("browse", &json!({"url": "https://evil.test/"}), Some(&p)).is_err());
//! assert!(tools.check("shell", &json!({}), Some(&p)).is_err());
//! ```

use ai_core::Principal;
use serde_json::Value;

/// Reason code: the tool is not on the caller's allow-list.
pub const NOT_ALLOWED: &str = "completion.tool.not_allowed";
/// Reason code: an argument broke a rule (wrong tenant, missing value).
pub const ARGUMENT_NOT_ALLOWED: &str = "completion.tool.argument_not_allowed";
/// Reason code: a URL argument is not on the domain allow-list.
pub const DOMAIN_NOT_ALLOWED: &str = "completion.tool.domain_not_allowed";
/// Reason code: the arguments are not a JSON object, or are too large to check.
pub const INVALID_ARGUMENTS: &str = "completion.tool.invalid_arguments";

/// A field of the [`Principal`] an argument must equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalField {
    /// `subject`.
    Subject,
    /// `tenant`.
    Tenant,
    /// `team`.
    Team,
    /// `agent`.
    Agent,
}

impl PrincipalField {
    /// The field named `name` (`subject`, `tenant`, `team`, `agent`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "subject" => Some(PrincipalField::Subject),
            "tenant" => Some(PrincipalField::Tenant),
            "team" => Some(PrincipalField::Team),
            "agent" => Some(PrincipalField::Agent),
            _ => None,
        }
    }

    fn of(self, p: &Principal) -> Option<&str> {
        match self {
            PrincipalField::Subject => Some(&p.subject),
            PrincipalField::Tenant => p.tenant.as_deref(),
            PrincipalField::Team => p.team.as_deref(),
            PrincipalField::Agent => p.agent.as_deref(),
        }
    }
}

/// What an argument rule checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgCheck {
    /// The value must be a string equal to this field of the caller.
    Equals(PrincipalField),
    /// The value must be an `http`/`https` URL (a bare `host/path` is read as `https`)
    /// whose host is on the list: `example.com` exactly, `*.example.com` any subdomain.
    Domains(Vec<String>),
}

/// A rule on one argument of the tools whose name matches `tool`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolRule {
    tool: String,
    pointer: String,
    check: ArgCheck,
    required: bool,
}

impl ToolRule {
    /// The value at `pointer` (RFC 6901, e.g. `/customer/tenant_id`) of `tool`'s
    /// arguments must equal `field` of the caller.
    pub fn equals(tool: &str, pointer: &str, field: PrincipalField) -> Self {
        ToolRule {
            tool: tool.to_owned(),
            pointer: pointer.to_owned(),
            check: ArgCheck::Equals(field),
            required: true,
        }
    }

    /// The value at `pointer` must be a URL on `domains`.
    pub fn domains<I, S>(tool: &str, pointer: &str, domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ToolRule {
            tool: tool.to_owned(),
            pointer: pointer.to_owned(),
            check: ArgCheck::Domains(
                domains
                    .into_iter()
                    .map(|d| d.into().to_ascii_lowercase())
                    .collect(),
            ),
            required: true,
        }
    }

    /// Whether a call without a value at the pointer breaks the rule. Default `true`;
    /// `false` for tools where the argument is optional (Computer Use's `computer` has
    /// no URL on a `screenshot` action).
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    fn check(&self, args: &Value, principal: Option<&Principal>) -> Result<(), &'static str> {
        let Some(v) = args.pointer(&self.pointer) else {
            return if self.required {
                Err(ARGUMENT_NOT_ALLOWED)
            } else {
                Ok(())
            };
        };
        match &self.check {
            ArgCheck::Equals(field) => {
                let want = principal.and_then(|p| field.of(p));
                match (v.as_str(), want) {
                    (Some(got), Some(want)) if got == want => Ok(()),
                    _ => Err(ARGUMENT_NOT_ALLOWED),
                }
            }
            ArgCheck::Domains(list) => match v.as_str().and_then(host_of) {
                Some(host) if list.iter().any(|d| domain_matches(d, &host)) => Ok(()),
                _ => Err(DOMAIN_NOT_ALLOWED),
            },
        }
    }
}

/// The host of an `http`/`https` URL, lower case, without a trailing dot. A value with
/// no scheme is read as `https://<value>`; any other scheme, user info or a value that
/// does not parse has no host (and so is not allowed).
fn host_of(value: &str) -> Option<String> {
    let value = value.trim();
    let uri: http::Uri = if value.contains("://") {
        value.parse().ok()?
    } else {
        format!("https://{value}").parse().ok()?
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return None,
    }
    let auth = uri.authority()?;
    // User info, or a "port" that is not one (`javascript:alert(1)` read as a host).
    if auth.as_str().contains('@') || (auth.as_str().contains(':') && auth.port_u16().is_none()) {
        return None;
    }
    let host = auth.host().trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn domain_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(base) => host
            .strip_suffix(base)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        None => pattern == host,
    }
}

/// A name glob: exact, or a prefix ending in `*` (`lookup_*`, `*`).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A tool call refused by the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolViolation {
    /// The reason code, e.g. `completion.tool.not_allowed`.
    pub code: &'static str,
    /// The rule that refused it: `allow-list`, or the argument's JSON pointer.
    pub rule: String,
}

/// Which tools may be called and with what arguments. The default checks nothing.
#[derive(Clone, Debug)]
pub struct ToolPolicy {
    allow: Option<Vec<String>>,
    scope_prefix: Option<String>,
    rules: Vec<ToolRule>,
    max_input_bytes: usize,
    scan_input: bool,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        ToolPolicy {
            allow: None,
            scope_prefix: None,
            rules: Vec::new(),
            max_input_bytes: 1 << 20,
            scan_input: false,
        }
    }
}

impl ToolPolicy {
    /// Tools anyone may call (globs: `get_weather`, `lookup_*`). Once set, a tool
    /// neither here nor in the caller's scopes is refused.
    pub fn allow<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow
            .get_or_insert_with(Vec::new)
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Scopes of the caller that allow a tool: with `tool:`, the scope
    /// `tool:lookup_customer` allows that tool and `tool:*` every tool. Once set, the
    /// name is checked even without [`allow`](Self::allow).
    pub fn scope_prefix(mut self, prefix: &str) -> Self {
        self.scope_prefix = Some(prefix.to_owned());
        self
    }

    /// Adds an argument rule.
    pub fn rule(mut self, rule: ToolRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The most bytes of arguments held for one call (default 1 MiB); a longer call is
    /// refused with `completion.tool.invalid_arguments` rather than passed unchecked.
    pub fn max_input_bytes(mut self, n: usize) -> Self {
        self.max_input_bytes = n;
        self
    }

    /// Whether the layer's classifiers also run over the arguments (a call whose
    /// arguments carry a finding that is not `flag` is refused). Default `false`.
    pub fn scan_input(mut self, on: bool) -> Self {
        self.scan_input = on;
        self
    }

    /// Whether tool calls are held and checked at all.
    pub fn is_active(&self) -> bool {
        self.allow.is_some() || self.scope_prefix.is_some() || !self.rules.is_empty()
    }

    pub(crate) fn scans_input(&self) -> bool {
        self.scan_input
    }

    pub(crate) fn max_input(&self) -> usize {
        self.max_input_bytes
    }

    /// Checks one call: its name, then every rule whose tool glob matches it.
    pub fn check(
        &self,
        name: &str,
        args: &Value,
        principal: Option<&Principal>,
    ) -> Result<(), ToolViolation> {
        if self.allow.is_some() || self.scope_prefix.is_some() {
            let listed = self
                .allow
                .as_ref()
                .is_some_and(|l| l.iter().any(|g| glob(g, name)));
            let scoped = match (&self.scope_prefix, principal) {
                (Some(prefix), Some(p)) => p.scopes.iter().any(|s| {
                    s.strip_prefix(prefix.as_str())
                        .is_some_and(|pat| glob(pat, name))
                }),
                _ => false,
            };
            if !listed && !scoped {
                return Err(ToolViolation {
                    code: NOT_ALLOWED,
                    rule: "allow-list".to_owned(),
                });
            }
        }
        if !args.is_object() {
            return Err(ToolViolation {
                code: INVALID_ARGUMENTS,
                rule: "object".to_owned(),
            });
        }
        for r in self.rules.iter().filter(|r| glob(&r.tool, name)) {
            r.check(args, principal).map_err(|code| ToolViolation {
                code,
                rule: r.pointer.clone(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn hosts_are_read_strictly() {
        assert_eq!(
            host_of("https://Docs.Example.com./a?b").as_deref(),
            Some("docs.example.com")
        );
        assert_eq!(host_of("example.com/path").as_deref(), Some("example.com"));
        assert_eq!(
            host_of("http://example.com:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_of("ftp://example.com"), None);
        assert_eq!(host_of("javascript:alert(1)"), None);
        assert_eq!(host_of("https://good.com@evil.test/"), None);
        assert_eq!(host_of("not a url"), None);
        assert!(domain_matches("*.example.org", "a.example.org"));
        assert!(domain_matches("*.example.org", "a.b.example.org"));
        assert!(!domain_matches("*.example.org", "example.org"));
        assert!(!domain_matches("*.example.org", "badexample.org"));
        assert!(!domain_matches("example.org", "a.example.org"));
    }

    #[test]
    fn scopes_allow_tools() {
        let tools = ToolPolicy::default().scope_prefix("tool:");
        let mut p = Principal::new("bob");
        assert_eq!(
            tools
                .check("search", &json!({}), Some(&p))
                .expect_err("refused")
                .code,
            NOT_ALLOWED
        );
        assert!(tools.check("search", &json!({}), None).is_err());
        p.scopes = Arc::from(vec![Arc::from("tool:search_*")]);
        assert!(tools.check("search_docs", &json!({}), Some(&p)).is_ok());
        assert!(tools.check("delete", &json!({}), Some(&p)).is_err());
        assert!(!ToolPolicy::default().is_active());
        assert!(
            ToolPolicy::default()
                .check("anything", &json!({}), None)
                .is_ok()
        );
    }

    #[test]
    fn rules_apply_to_matching_tools_only() {
        let tools = ToolPolicy::default()
            .rule(ToolRule::equals("crm_*", "/tenant", PrincipalField::Tenant))
            .rule(ToolRule::domains("computer", "/url", ["example.com"]).required(false));
        let mut p = Principal::new("bob");
        assert_eq!(
            tools
                .check("crm_read", &json!({"tenant": "t1"}), Some(&p))
                .expect_err("refused"),
            ToolViolation {
                code: ARGUMENT_NOT_ALLOWED,
                rule: "/tenant".into()
            }
        );
        p.tenant = Some("t1".into());
        assert!(
            tools
                .check("crm_read", &json!({"tenant": "t1"}), Some(&p))
                .is_ok()
        );
        assert!(tools.check("crm_read", &json!({}), Some(&p)).is_err());
        assert!(
            tools
                .check("crm_read", &json!({"tenant": 1}), Some(&p))
                .is_err()
        );
        assert!(
            tools
                .check("computer", &json!({"action": "screenshot"}), None)
                .is_ok()
        );
        assert_eq!(
            tools
                .check("computer", &json!({"url": "evil.test"}), None)
                .expect_err("refused")
                .code,
            DOMAIN_NOT_ALLOWED
        );
        assert_eq!(
            tools
                .check("other", &json!([1]), None)
                .expect_err("refused")
                .code,
            INVALID_ARGUMENTS
        );
    }
}
