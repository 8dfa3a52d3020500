//! Automatic persisted queries (Apollo's APQ protocol): a client sends only the SHA-256 of a
//! document in `extensions.persistedQuery.sha256Hash`; the server answers from its store, or
//! with `PERSISTED_QUERY_NOT_FOUND`, upon which the client sends the document with its hash
//! once, and the server checks the hash and stores it.
//!
//! The store is bounded in entries and bytes; the least recently used documents go first. It
//! lives in one process: with several instances a client may be asked for a document once
//! per instance, which the protocol handles by design.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A document's SHA-256.
pub type Hash = [u8; 32];

/// Why a persisted-query request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApqError {
    /// The store does not have the document: send it with its hash.
    NotFound,
    /// The hash is not 64 hexadecimal digits, or the version is not 1.
    Malformed(String),
    /// The document sent does not have the hash sent.
    Mismatch,
}

impl ApqError {
    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApqError::NotFound => "PERSISTED_QUERY_NOT_FOUND",
            ApqError::Malformed(_) | ApqError::Mismatch => "BAD_REQUEST",
        }
    }

    /// The client-facing message (`PersistedQueryNotFound` is what Apollo's clients match).
    pub fn message(&self) -> String {
        match self {
            ApqError::NotFound => "PersistedQueryNotFound".to_owned(),
            ApqError::Malformed(m) => m.clone(),
            ApqError::Mismatch => "the sha256Hash does not match the query sent".to_owned(),
        }
    }
}

struct Entry {
    document: std::sync::Arc<str>,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Hash, Entry>,
    bytes: usize,
    clock: u64,
}

/// The bounded document store.
pub struct Store {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// Parses the hex form of a hash.
fn parse_hash(hex: &str) -> Option<Hash> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of a document.
pub fn hash_of(document: &str) -> Hash {
    Sha256::digest(document.as_bytes()).into()
}

impl Store {
    /// A store of at most `max_entries` documents and `max_bytes` of text.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Store {
            inner: Mutex::new(Inner::default()),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves a request's document from `extensions.persistedQuery` (`version`,
    /// `sha256Hash`) and its `query`, if any: the stored document, or the one sent once its
    /// hash is checked (and then stored).
    pub fn resolve(
        &self,
        version: Option<i64>,
        sha256_hex: &str,
        query: Option<String>,
    ) -> Result<std::sync::Arc<str>, ApqError> {
        if version != Some(1) {
            return Err(ApqError::Malformed(
                "persistedQuery.version must be 1".to_owned(),
            ));
        }
        let hash = parse_hash(&sha256_hex.to_ascii_lowercase()).ok_or_else(|| {
            ApqError::Malformed("persistedQuery.sha256Hash must be 64 hexadecimal digits".into())
        })?;
        match query {
            Some(q) => {
                if hash_of(&q) != hash {
                    return Err(ApqError::Mismatch);
                }
                let doc: std::sync::Arc<str> = q.into();
                self.insert(hash, doc.clone());
                Ok(doc)
            }
            None => {
                let mut inner = self.lock();
                inner.clock += 1;
                let now = inner.clock;
                match inner.entries.get_mut(&hash) {
                    Some(e) => {
                        e.used = now;
                        Ok(e.document.clone())
                    }
                    None => Err(ApqError::NotFound),
                }
            }
        }
    }

    fn insert(&self, hash: Hash, document: std::sync::Arc<str>) {
        if document.len() > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(e) = inner.entries.get_mut(&hash) {
            e.used = now;
            return;
        }
        while !inner.entries.is_empty()
            && (inner.entries.len() >= self.max_entries
                || inner.bytes + document.len() > self.max_bytes)
        {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(h, _)| *h)
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.document.len();
            }
        }
        inner.bytes += document.len();
        inner.entries.insert(
            hash,
            Entry {
                document,
                used: now,
            },
        );
    }

    /// Documents stored.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_protocol_round_trip() {
        let store = Store::new(10, 1 << 20);
        let q = "{ users { id } }";
        let h = hex(hash_of(q));
        assert_eq!(store.resolve(Some(1), &h, None), Err(ApqError::NotFound));
        assert_eq!(store.resolve(Some(1), &h, Some(q.into())).as_deref(), Ok(q));
        assert_eq!(store.resolve(Some(1), &h, None).as_deref(), Ok(q));
        assert_eq!(
            store
                .resolve(Some(1), &h.to_ascii_uppercase(), None)
                .as_deref(),
            Ok(q)
        );
        assert_eq!(
            store.resolve(Some(1), &h, Some("{ other }".into())),
            Err(ApqError::Mismatch)
        );
        assert!(matches!(
            store.resolve(Some(2), &h, None),
            Err(ApqError::Malformed(_))
        ));
        assert!(matches!(
            store.resolve(Some(1), "xyz", None),
            Err(ApqError::Malformed(_))
        ));
    }

    #[test]
    fn the_store_is_bounded_and_keeps_the_recently_used() {
        let store = Store::new(3, 1 << 20);
        let docs: Vec<String> = (0..5).map(|i| format!("{{ a{i}: __typename }}")).collect();
        for d in &docs[..3] {
            store
                .resolve(Some(1), &hex(hash_of(d)), Some(d.clone()))
                .expect("stored");
        }
        // Use the first, then add two more: the second and third go.
        store
            .resolve(Some(1), &hex(hash_of(&docs[0])), None)
            .expect("hit");
        for d in &docs[3..] {
            store
                .resolve(Some(1), &hex(hash_of(d)), Some(d.clone()))
                .expect("stored");
        }
        assert_eq!(store.len(), 3);
        assert!(
            store
                .resolve(Some(1), &hex(hash_of(&docs[0])), None)
                .is_ok()
        );
        assert_eq!(
            store.resolve(Some(1), &hex(hash_of(&docs[1])), None),
            Err(ApqError::NotFound)
        );
        let small = Store::new(100, 40);
        for d in &docs {
            small
                .resolve(Some(1), &hex(hash_of(d)), Some(d.clone()))
                .expect("answered even when not kept");
        }
        assert!(small.len() <= 2, "bounded by bytes");
    }
}
