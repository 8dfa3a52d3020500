//! Trusted documents: the operations a first-party frontend ships, known to the server ahead
//! of time from persisted-operation manifests (`EAGERQL_TRUSTED_DOCUMENTS`), and named by a
//! request's `documentId` (the GraphQL-over-HTTP persisted documents proposal) or by Apollo's
//! `extensions.persistedQuery.sha256Hash`. With `EAGERQL_TRUSTED_ONLY` no other document runs.
//!
//! Two manifest formats are read: Apollo's `persisted-query-manifest.json`
//! (`{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "name",
//! "type", "body"}]}`) and Relay's `persisted_queries.json` (`{"<id>": "<document>"}`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::documents::persisted::{Hash, hash_of, parse_hash};

/// One document of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The id clients send (Apollo: the body's SHA-256 in hex; Relay: the compiler's id).
    pub id: String,
    /// The operation's name, when the manifest gives it.
    pub name: Option<String>,
    /// The whole document: the operation and the fragments it uses.
    pub body: String,
}

/// The most documents one manifest may hold.
pub const MAX_MANIFEST_ENTRIES: usize = 100_000;

/// Reads a manifest's entries. Either format; anything else is an error naming what is wrong.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("not a JSON manifest: {e}"))?;
    let Json::Object(obj) = json else {
        return Err("a manifest is a JSON object".to_owned());
    };
    let entries = if let Some(format) = obj.get("format") {
        if format != "apollo-persisted-query-manifest" {
            return Err(format!("unknown manifest format {format}"));
        }
        if obj.get("version").and_then(Json::as_i64) != Some(1) {
            return Err("only version 1 of Apollo's manifest format is read".to_owned());
        }
        let ops = obj
            .get("operations")
            .and_then(Json::as_array)
            .ok_or("an Apollo manifest has an `operations` array")?;
        ops.iter()
            .enumerate()
            .map(|(i, op)| {
                let field = |k: &str| op.get(k).and_then(Json::as_str).map(str::to_owned);
                Ok(ManifestEntry {
                    id: field("id").ok_or(format!("operations[{i}] has no string `id`"))?,
                    name: field("name"),
                    body: field("body").ok_or(format!("operations[{i}] has no string `body`"))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?
    } else {
        // Relay: id -> document text.
        obj.into_iter()
            .map(|(id, body)| match body {
                Json::String(body) => Ok(ManifestEntry {
                    id,
                    name: None,
                    body,
                }),
                _ => Err(format!(
                    "`{id}`: a Relay manifest maps ids to document strings"
                )),
            })
            .collect::<Result<Vec<_>, String>>()?
    };
    if entries.len() > MAX_MANIFEST_ENTRIES {
        return Err(format!(
            "a manifest holds at most {MAX_MANIFEST_ENTRIES} documents"
        ));
    }
    Ok(entries)
}

/// The trusted documents, by id and by SHA-256 of their text.
#[derive(Debug, Default)]
pub struct Trusted {
    by_id: HashMap<String, Arc<str>>,
    by_hash: HashMap<Hash, Arc<str>>,
    /// The operation name a manifest gives a document (by the document's hash).
    names: HashMap<Hash, String>,
    entries: Vec<(PathBuf, ManifestEntry)>,
}

/// A document id of the persisted documents proposal: `sha256:<hex>` names a document by the
/// SHA-256 of its text; any other id is looked up as the manifest gives it.
fn sha256_id(id: &str) -> Option<Hash> {
    parse_hash(id.strip_prefix("sha256:")?)
}

impl Trusted {
    /// Reads the manifests at `paths`. A manifest that cannot be read, or an id given to two
    /// different documents, is an error.
    pub fn load(paths: &[PathBuf]) -> Result<Trusted, String> {
        let mut trusted = Trusted::default();
        for path in paths {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let entries = parse_manifest(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            for entry in entries {
                trusted.add(path, entry)?;
            }
        }
        Ok(trusted)
    }

    fn add(&mut self, path: &Path, entry: ManifestEntry) -> Result<(), String> {
        let body: Arc<str> = entry.body.as_str().into();
        if let Some(old) = self.by_id.get(&entry.id)
            && **old != *entry.body
        {
            return Err(format!(
                "{}: id {} names two different documents",
                path.display(),
                entry.id
            ));
        }
        self.by_id.insert(entry.id.clone(), body.clone());
        let hash = hash_of(&entry.body);
        self.by_hash.insert(hash, body);
        if let Some(name) = &entry.name {
            self.names.entry(hash).or_insert_with(|| name.clone());
        }
        self.entries.push((path.to_owned(), entry));
        Ok(())
    }

    /// Whether there are no trusted documents.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many documents the manifests hold.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every manifest entry, with the manifest it came from.
    pub fn entries(&self) -> &[(PathBuf, ManifestEntry)] {
        &self.entries
    }

    /// The document a request's `documentId` names.
    pub fn by_document_id(&self, id: &str) -> Option<Arc<str>> {
        if let Some(doc) = self.by_id.get(id) {
            return Some(doc.clone());
        }
        self.by_hash.get(&sha256_id(id)?).cloned()
    }

    /// The document whose SHA-256 is `hash`.
    pub fn by_hash(&self, hash: &Hash) -> Option<Arc<str>> {
        self.by_hash.get(hash).cloned()
    }

    /// The operation a manifest names for the trusted document `text`: a request that names
    /// the document but no operation runs that one.
    pub fn operation_of(&self, text: &str) -> Option<&str> {
        // Asked for every request: no hashing when no manifest names an operation.
        if self.names.is_empty() {
            return None;
        }
        self.names.get(&hash_of(text)).map(String::as_str)
    }

    /// Whether `text` is, character for character, a trusted document.
    pub fn contains_text(&self, text: &str) -> bool {
        self.by_hash.contains_key(&hash_of(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apollo_and_relay_manifests() {
        let apollo = r#"{"format":"apollo-persisted-query-manifest","version":1,
            "operations":[{"id":"abc","name":"Q","type":"query","body":"query Q { products { id } }"}]}"#;
        let entries = parse_manifest(apollo).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name.as_deref(), Some("Q"));
        let relay = r#"{"r1": "query R { products { id } }"}"#;
        let entries = parse_manifest(relay).unwrap();
        assert_eq!(entries[0].id, "r1");
        assert_eq!(entries[0].name, None);
        assert!(parse_manifest(r#"{"r1": 3}"#).is_err());
        assert!(parse_manifest(r#"{"format":"other"}"#).is_err());
        assert!(parse_manifest("[]").is_err());
    }

    #[test]
    fn finds_documents_by_id_and_by_sha256() {
        let mut t = Trusted::default();
        let body = "query Q { products { id } }";
        t.add(
            Path::new("m.json"),
            ManifestEntry {
                id: "r1".into(),
                name: None,
                body: body.into(),
            },
        )
        .unwrap();
        let hex = hex::encode(hash_of(body));
        assert_eq!(t.by_document_id("r1").as_deref(), Some(body));
        assert_eq!(
            t.by_document_id(&format!("sha256:{hex}")).as_deref(),
            Some(body)
        );
        assert!(t.by_document_id(&hex).is_none());
        assert!(t.contains_text(body));
        assert!(!t.contains_text("query Q { products { name } }"));
        let clash = ManifestEntry {
            id: "r1".into(),
            name: None,
            body: "{ products { name } }".into(),
        };
        assert!(t.add(Path::new("m.json"), clash).is_err());
    }
}
