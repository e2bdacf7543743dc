//! Where key records live: [`KeyStore`], with [`MemoryKeys`] and [`FileKeys`] (a TOML or
//! JSON file, reloaded when it changes, without a restart).

use crate::key::{KeyError, KeyRecord, Resolved};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Finds a key record by its id. Lookups happen on every request: keep them in memory
/// (a remote store caches here and refreshes behind).
pub trait KeyStore: Send + Sync + 'static {
    /// The record of key `id`, if there is one.
    #[doc(hidden)]
    fn resolve(&self, id: &str) -> Option<ResolvedKey>;
}

/// A record with its principal prepared (opaque; built by the stores).
#[derive(Clone, Debug)]
pub struct ResolvedKey(pub(crate) Resolved);

type Map = HashMap<String, ResolvedKey>;

fn index(records: Vec<KeyRecord>) -> Result<Map, KeyError> {
    let mut map = HashMap::with_capacity(records.len());
    for r in records {
        if r.kind == crate::key::KeyKind::Agent && !r.models.is_empty() {
            return Err(KeyError(format!(
                "key {}: an agent key's models are its person's; remove `models`",
                r.id
            )));
        }
        if r.kind == crate::key::KeyKind::User && !r.acts_for.is_empty() {
            return Err(KeyError(format!(
                "key {}: only agent keys (kind = \"agent\") act for a person",
                r.id
            )));
        }
        if !crate::key::valid_id(&r.id) {
            return Err(KeyError(format!(
                "key id {:?} is not 16 lowercase hex digits",
                r.id
            )));
        }
        let id = r.id.clone();
        if map
            .insert(id.clone(), ResolvedKey(Resolved::new(r)))
            .is_some()
        {
            return Err(KeyError(format!("key id {id} appears twice")));
        }
    }
    Ok(map)
}

/// Key records held in memory.
#[derive(Clone, Default)]
pub struct MemoryKeys {
    map: Arc<RwLock<Arc<Map>>>,
}

impl fmt::Debug for MemoryKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeys")
            .field("keys", &self.snapshot().len())
            .finish()
    }
}

impl MemoryKeys {
    /// A store holding `records` (ids must be unique).
    pub fn new(records: Vec<KeyRecord>) -> Result<Self, KeyError> {
        Ok(MemoryKeys {
            map: Arc::new(RwLock::new(Arc::new(index(records)?))),
        })
    }

    /// Replaces every record at once (requests see the old set or the new one, never a mix).
    pub fn replace(&self, records: Vec<KeyRecord>) -> Result<(), KeyError> {
        let map = Arc::new(index(records)?);
        match self.map.write() {
            Ok(mut g) => *g = map,
            Err(poisoned) => *poisoned.into_inner() = map,
        }
        Ok(())
    }

    fn snapshot(&self) -> Arc<Map> {
        match self.map.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl KeyStore for MemoryKeys {
    fn resolve(&self, id: &str) -> Option<ResolvedKey> {
        self.snapshot().get(id).cloned()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyRecord>,
}

/// Key records from a file: TOML (`[[keys]]` tables) or, for a `.json` name,
/// `{"keys": [...]}`. [`FileKeys::watch`] reloads it when its contents change; a file that
/// no longer parses is reported and the last good set stays in force, and a file caught
/// mid-write (size or time changing during the read, or empty) is read again next time.
/// Replace it atomically (write a new file, then rename it over the old one) to be sure
/// no reader ever sees half of it.
#[derive(Clone)]
pub struct FileKeys {
    path: PathBuf,
    keys: MemoryKeys,
    loaded: Arc<RwLock<Version>>,
}

impl fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeys")
            .field("path", &self.path)
            .field("keys", &self.keys)
            .finish()
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// What identifies one version of the file: its contents' SHA-256.
type Version = [u8; 32];

fn version(text: &str) -> Version {
    crate::key::sha256(text.as_bytes())
}

/// Reads the file whole, and only when it is not being written: the modification time
/// and size are the same before and after the read, and it is not empty (a file being
/// rewritten is often empty for a moment). `Ok(None)`: try again later.
fn read_stable(path: &Path) -> Result<Option<String>, KeyError> {
    let before = stamp(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| KeyError(format!("{}: cannot read the key file: {e}", path.display())))?;
    if before != stamp(path) || text.is_empty() {
        return Ok(None);
    }
    Ok(Some(text))
}

fn parse(path: &Path, text: &str) -> Result<Vec<KeyRecord>, KeyError> {
    let file: KeyFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| {
            KeyError(format!(
                "{}:{}:{}: {}",
                path.display(),
                e.line(),
                e.column(),
                e
            ))
        })?
    } else {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            KeyError(format!(
                "{}:{line}: {}",
                path.display(),
                e.message().trim_end()
            ))
        })?
    };
    Ok(file.keys)
}

impl FileKeys {
    /// Reads the file now; an unreadable or invalid file is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, KeyError> {
        let path = path.into();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| KeyError(format!("{}: cannot read the key file: {e}", path.display())))?;
        let keys = MemoryKeys::new(parse(&path, &text)?)
            .map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        Ok(FileKeys {
            path,
            keys,
            loaded: Arc::new(RwLock::new(version(&text))),
        })
    }

    /// Reads the file again and puts it in force if its contents changed (compared by
    /// SHA-256, so an edit that keeps the size and time is seen too). A file caught while
    /// being written is left for the next call. Returns whether a new set is in force.
    pub fn reload_if_changed(&self) -> Result<bool, KeyError> {
        let Some(text) = read_stable(&self.path)? else {
            return Ok(false);
        };
        let now = version(&text);
        if self.loaded.read().map(|g| *g == now).unwrap_or(false) {
            return Ok(false);
        }
        let records = parse(&self.path, &text)?;
        self.keys
            .replace(records)
            .map_err(|e| KeyError(format!("{}: {e}", self.path.display())))?;
        if let Ok(mut g) = self.loaded.write() {
            *g = now;
        }
        Ok(true)
    }

    /// Checks the file every `every` on the current tokio runtime and reloads it when it
    /// changed; the task ends when every clone of this store is gone.
    pub fn watch(&self, every: Duration) {
        let weak = Arc::downgrade(&self.keys.map);
        let path = self.path.clone();
        let loaded = self.loaded.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(map) = weak.upgrade() else { break };
                let store = FileKeys {
                    path: path.clone(),
                    keys: MemoryKeys { map },
                    loaded: loaded.clone(),
                };
                match store.reload_if_changed() {
                    Ok(true) => tracing::info!(path = %path.display(), "key file reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "key file not reloaded; the previous keys stay in force")
                    }
                }
            }
        });
    }
}

impl KeyStore for FileKeys {
    fn resolve(&self, id: &str) -> Option<ResolvedKey> {
        self.keys.resolve(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tmp")
            .join(format!("ai-auth-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn toml_and_json_files_load() {
        let t = file(
            "k.toml",
            &format!(
                "[[keys]]\nid = \"0123456789abcdef\"\nhash = \"{HASH}\"\nsubject = \"alice\"\ntenant = \"acme\"\nmodels = [\"claude-*\"]\n"
            ),
        );
        let s = FileKeys::open(&t).expect("toml");
        let r = s.resolve("0123456789abcdef").expect("found");
        assert_eq!(&*r.0.principal.subject, "alice");
        assert!(r.0.models.allows("claude-x"));
        let j = file(
            "k.json",
            &format!(
                "{{\"keys\":[{{\"id\":\"0123456789abcdef\",\"hash\":\"{HASH}\",\"subject\":\"bob\"}}]}}"
            ),
        );
        let s = FileKeys::open(&j).expect("json");
        assert_eq!(
            &*s.resolve("0123456789abcdef")
                .expect("found")
                .0
                .principal
                .subject,
            "bob"
        );
    }

    #[test]
    fn agent_records_are_checked() {
        let bad_models = KeyRecord {
            models: vec!["x".into()],
            ..agent_record()
        };
        assert!(
            MemoryKeys::new(vec![bad_models])
                .expect_err("models")
                .to_string()
                .contains("its person's")
        );
        let user_acting = KeyRecord {
            kind: crate::key::KeyKind::User,
            ..agent_record()
        };
        assert!(
            MemoryKeys::new(vec![user_acting])
                .expect_err("acts_for")
                .to_string()
                .contains("only agent keys")
        );
    }

    fn agent_record() -> KeyRecord {
        serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef", "hash": HASH, "subject": "bot", "kind": "agent",
            "acts_for": ["fedcba9876543210"],
        }))
        .expect("record")
    }

    #[test]
    fn bad_files_name_the_problem() {
        let p = file(
            "dup.toml",
            &format!(
                "[[keys]]\nid = \"0123456789abcdef\"\nhash = \"{HASH}\"\nsubject = \"a\"\n[[keys]]\nid = \"0123456789abcdef\"\nhash = \"{HASH}\"\nsubject = \"b\"\n"
            ),
        );
        assert!(
            FileKeys::open(&p)
                .expect_err("dup")
                .to_string()
                .contains("appears twice")
        );
        let p = file(
            "unknown.toml",
            &format!(
                "[[keys]]\nid = \"0123456789abcdef\"\nhash = \"{HASH}\"\nsubject = \"a\"\nsecret = \"x\"\n"
            ),
        );
        let e = FileKeys::open(&p).expect_err("unknown").to_string();
        assert!(e.contains("unknown.toml:5: unknown field `secret`"), "{e}");
        let p = file(
            "hash.toml",
            "[[keys]]\nid = \"0123456789abcdef\"\nhash = \"zz\"\nsubject = \"a\"\n",
        );
        assert!(
            FileKeys::open(&p)
                .expect_err("hash")
                .to_string()
                .contains("64 hex digits")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_changed_file_is_picked_up_and_a_broken_one_ignored() {
        let p = file(
            "reload.toml",
            &format!("[[keys]]\nid = \"0123456789abcdef\"\nhash = \"{HASH}\"\nsubject = \"a\"\n"),
        );
        let s = FileKeys::open(&p).expect("open");
        assert!(s.resolve("fedcba9876543210").is_none());
        std::fs::write(
            &p,
            format!(
                "[[keys]]\nid = \"fedcba9876543210\"\nhash = \"{HASH}\"\nsubject = \"new person\"\n"
            ),
        )
        .expect("write");
        assert!(s.reload_if_changed().expect("reloads"));
        assert!(
            s.resolve("0123456789abcdef").is_none(),
            "a removed key stops working"
        );
        assert!(s.resolve("fedcba9876543210").is_some());
        // An edit that keeps the size (a replaced hash) is seen too.
        let same_size = std::fs::read_to_string(&p)
            .expect("read")
            .replace("new person", "new-person");
        std::fs::write(&p, same_size).expect("write");
        assert!(s.reload_if_changed().expect("reloads"));
        assert_eq!(
            &*s.resolve("fedcba9876543210")
                .expect("key")
                .0
                .principal
                .subject,
            "new-person"
        );
        assert!(!s.reload_if_changed().expect("unchanged"), "nothing new");
        std::fs::write(&p, "").expect("truncate");
        assert!(
            !s.reload_if_changed().expect("skipped"),
            "an empty file is being written"
        );
        assert!(s.resolve("fedcba9876543210").is_some());
        std::fs::write(&p, "[[keys]]\nnot toml at all = = =\n").expect("write");
        assert!(s.reload_if_changed().is_err());
        assert!(
            s.resolve("fedcba9876543210").is_some(),
            "the last good set stays"
        );
    }
}
