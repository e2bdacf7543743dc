//! Redis Cluster key helpers shared by the layers that keep state in Redis (rate limits,
//! budgets): one Lua script may only touch keys of one hash slot, so keys carry a hash tag
//! and a request's keys are grouped by it.

/// The hash tag of a key: what Redis Cluster hashes (the text between the first `{` and
/// the next `}`, when not empty), else the whole key.
///
/// ```
/// assert_eq!(ai_core::cluster::hash_tag("rl:{acme}:user:bob"), "acme");
/// assert_eq!(ai_core::cluster::hash_tag("plain"), "plain");
/// ```
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Indices of `items` grouped by the hash tag of their key, groups in order of first
/// appearance: one script per group.
pub fn group_by_tag<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<Vec<usize>> {
    let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let tag = hash_tag(key(it));
        match out.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, v)) => v.push(i),
            None => out.push((tag, vec![i])),
        }
    }
    out.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_groups() {
        assert_eq!(hash_tag("rl:{}:x"), "rl:{}:x");
        assert_eq!(hash_tag("a{b"), "a{b");
        let keys = ["b:{team:a}:x", "b:{team:b}:y", "b:{team:a}:z"];
        assert_eq!(group_by_tag(&keys, |k| k), vec![vec![0, 2], vec![1]]);
    }
}
