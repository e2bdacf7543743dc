//! Mints a gateway key: `cargo run --example mint_key -- --subject alice --tenant acme`.
//!
//! The key (`gwk_...`) is printed once, on stderr, for the person it is for; the record to
//! add to the key file (only the keyed hash of the secret) is printed on stdout, so
//! `... >> keys.toml` appends the record and never the key. The pepper comes from
//! `GATEWAY_KEY_PEPPER` (or the variable `--pepper-env` names), the same the gateway uses.

use ai_gateway::auth::{KeyHasher, MintedKey};
use clap::Parser;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Mint a gateway key: the key on stderr (shown once), its key-file record on stdout.
#[derive(Debug, Parser)]
#[command(name = "mint_key")]
struct Cli {
    /// Who calls with it (a person or service account).
    #[arg(long)]
    subject: String,
    /// Tenant / organisation.
    #[arg(long)]
    tenant: Option<String>,
    /// Team within the tenant.
    #[arg(long)]
    team: Option<String>,
    /// Service tier, e.g. free or pro.
    #[arg(long)]
    tier: Option<String>,
    /// A scope to grant (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// A model it may use, exact or a prefix ending in * (repeatable; none: every model).
    #[arg(long = "model", value_name = "MODEL")]
    models: Vec<String>,
    /// An agent key acting for this person key id (repeatable); the agent names the person
    /// on each request in `x-acting-for`.
    #[arg(long = "acts-for", value_name = "KEY_ID")]
    acts_for: Vec<String>,
    /// Lifetime, e.g. 90d or 12h (none: no expiry).
    #[arg(long, value_name = "DURATION")]
    expires_in: Option<String>,
    /// The environment variable that holds the pepper.
    #[arg(long, default_value = "GATEWAY_KEY_PEPPER", value_name = "NAME")]
    pepper_env: String,
}

fn toml_string(s: &str) -> String {
    // A TOML basic string is a JSON string for everything this writes.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let texts = [
        Some(&cli.subject),
        cli.tenant.as_ref(),
        cli.team.as_ref(),
        cli.tier.as_ref(),
    ];
    if texts
        .into_iter()
        .flatten()
        .chain(cli.scopes.iter())
        .chain(cli.models.iter())
        .chain(cli.acts_for.iter())
        .any(|t| t.chars().any(char::is_control))
    {
        eprintln!("error: control characters are not allowed in the key's fields");
        return ExitCode::FAILURE;
    }
    let Some(pepper) = std::env::var(&cli.pepper_env)
        .ok()
        .filter(|p| !p.is_empty())
    else {
        eprintln!(
            "error: environment variable {} is not set: it holds the pepper the gateway's [auth] key_pepper names",
            cli.pepper_env
        );
        return ExitCode::FAILURE;
    };
    let hasher = match KeyHasher::new(pepper.as_bytes()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {}: {e}", cli.pepper_env);
            return ExitCode::FAILURE;
        }
    };
    let expires_at = match cli.expires_in.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => match SystemTime::now().checked_add(d) {
            Some(t) => Some(
                t.duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_secs(),
            ),
            None => {
                eprintln!("error: --expires-in is too far in the future");
                return ExitCode::FAILURE;
            }
        },
        Some(Err(e)) => {
            eprintln!("error: --expires-in: {e} (write e.g. 90d or 12h)");
            return ExitCode::FAILURE;
        }
    };
    let minted = match MintedKey::generate(&hasher) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter()
                .map(|s| toml_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut record = format!(
        "\n[[keys]]\nid = \"{}\"\nhash = \"{}\"\nsubject = {}\n",
        minted.id,
        minted.hash,
        toml_string(&cli.subject)
    );
    for (k, v) in [
        ("tenant", &cli.tenant),
        ("team", &cli.team),
        ("tier", &cli.tier),
    ] {
        if let Some(v) = v {
            record.push_str(&format!("{k} = {}\n", toml_string(v)));
        }
    }
    if !cli.scopes.is_empty() {
        record.push_str(&format!("scopes = {}\n", list(&cli.scopes)));
    }
    if !cli.models.is_empty() {
        record.push_str(&format!("models = {}\n", list(&cli.models)));
    }
    if let Some(t) = expires_at {
        record.push_str(&format!("expires_at = {t}\n"));
    }
    if !cli.acts_for.is_empty() {
        if !cli.models.is_empty() {
            eprintln!("error: an agent key's models are its person's: drop --model");
            return ExitCode::FAILURE;
        }
        record.push_str(&format!(
            "kind = \"agent\"\nacts_for = {}\n",
            list(&cli.acts_for)
        ));
    }
    print!("{record}");
    eprintln!(
        "key for {} (shown once; it is not stored anywhere):\n{}",
        cli.subject, minted.key
    );
    ExitCode::SUCCESS
}
