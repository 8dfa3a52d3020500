//! Automatic persisted queries (Apollo's APQ protocol): a client sends only the SHA-256 of a
//! document in `extensions.persistedQuery.sha256Hash`; the server answers from its store, or
//! with `PERSISTED_QUERY_NOT_FOUND`, upon which the client sends the document with its hash
//! once, and the server checks the hash and stores it.
//!
//! The store is bounded in entries and bytes; the least recently used documents go first. It
//! is each instance's cache in front of the database's `persisted_queries`, which every
//! instance shares (see `http::shared_document`).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::documents::cache::Bounded;
pub use crate::documents::cache::Hash;

/// Why a persisted-query request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApqError {
    /// The store does not have the document: send it with its hash.
    NotFound,
    /// The hash is not 64 hexadecimal digits, or the version is not 1.
    Malformed(String),
    /// The document sent does not have the hash sent.
    Mismatch,
    /// No trusted document has the `documentId` sent.
    UnknownDocument,
    /// Only trusted documents run here (`EAGERQL_TRUSTED_ONLY`), and this is none.
    NotInList,
}

impl ApqError {
    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApqError::NotFound | ApqError::UnknownDocument => "PERSISTED_QUERY_NOT_FOUND",
            ApqError::NotInList => "PERSISTED_QUERY_NOT_IN_LIST",
            ApqError::Malformed(_) | ApqError::Mismatch => "BAD_REQUEST",
        }
    }

    /// The client-facing message (`PersistedQueryNotFound` is what Apollo's clients match).
    pub fn message(&self) -> String {
        match self {
            ApqError::NotFound => "PersistedQueryNotFound".to_owned(),
            ApqError::Malformed(m) => m.clone(),
            ApqError::Mismatch => "the sha256Hash does not match the query sent".to_owned(),
            ApqError::UnknownDocument => "no trusted document has this documentId".to_owned(),
            ApqError::NotInList => {
                "only trusted documents run on this server; this document is not one of them"
                    .to_owned()
            }
        }
    }
}

/// The bounded document store.
pub struct Store {
    documents: Bounded<Arc<str>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("documents", &self.documents)
            .finish()
    }
}

/// Parses the hex form of a hash.
pub fn parse_hash(hex: &str) -> Option<Hash> {
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

/// The hash an `extensions.persistedQuery` names (`version` must be 1).
pub fn requested_hash(version: Option<i64>, sha256_hex: &str) -> Result<Hash, ApqError> {
    if version != Some(1) {
        return Err(ApqError::Malformed(
            "persistedQuery.version must be 1".to_owned(),
        ));
    }
    parse_hash(&sha256_hex.to_ascii_lowercase()).ok_or_else(|| {
        ApqError::Malformed("persistedQuery.sha256Hash must be 64 hexadecimal digits".into())
    })
}

/// The SHA-256 of a document.
pub fn hash_of(document: &str) -> Hash {
    Sha256::digest(document.as_bytes()).into()
}

impl Store {
    /// A store of at most `max_entries` documents and `max_bytes` of text.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Store {
            documents: Bounded::new(max_entries, max_bytes),
        }
    }

    /// Resolves a request's document from `extensions.persistedQuery` (`version`,
    /// `sha256Hash`) and its `query`, if any: the stored document, or the one sent once its
    /// hash is checked (and then stored).
    pub fn resolve(
        &self,
        version: Option<i64>,
        sha256_hex: &str,
        query: Option<String>,
    ) -> Result<Arc<str>, ApqError> {
        let hash = requested_hash(version, sha256_hex)?;
        match query {
            Some(q) => self.register(hash, &q),
            None => self.get(&hash).ok_or(ApqError::NotFound),
        }
    }

    /// Stores `document` under `hash` after checking that it has that hash.
    pub fn register(&self, hash: Hash, document: &str) -> Result<Arc<str>, ApqError> {
        if hash_of(document) != hash {
            return Err(ApqError::Mismatch);
        }
        let doc: Arc<str> = document.into();
        self.insert(hash, doc.clone());
        Ok(doc)
    }

    /// The stored document with this hash.
    pub fn get(&self, hash: &Hash) -> Option<Arc<str>> {
        self.documents.get(hash)
    }

    fn insert(&self, hash: Hash, document: Arc<str>) {
        let weight = document.len();
        self.documents.insert(hash, document, weight);
    }

    /// Documents stored.
    pub fn len(&self) -> usize {
        self.documents.len()
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
