//! Where a value is in a token's claims: a claim name, a JSON path or a JSON pointer.
//!
//! - `role`, `https://example.com/roles`: one top-level claim, named verbatim.
//! - `$.realm_access.roles`, `$['https://hasura.io/jwt/claims']['x-hasura-user-id']`,
//!   `$.groups[0]`: a JSON path of names and indexes (no wildcards or filters).
//! - `/realm_access/roles`, `/https:~1~1hasura.io~1jwt~1claims/x-hasura-user-id`: a JSON
//!   pointer (RFC 6901).

use serde_json::Value;

/// A parsed claim location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath {
    steps: Vec<String>,
    text: String,
}

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl ClaimPath {
    /// Parses `text` (see the module's forms); `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        let steps = if let Some(pointer) = text.strip_prefix('/') {
            pointer
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect()
        } else if let Some(path) = text.strip_prefix('$') {
            json_path(path).map_err(|e| format!("`{text}`: {e}"))?
        } else if text.is_empty() {
            return Err("a claim location cannot be empty".to_owned());
        } else {
            vec![text.to_owned()]
        };
        Ok(ClaimPath {
            steps,
            text: text.to_owned(),
        })
    }

    /// The value at this location in `claims`, if there is one.
    pub fn get<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.steps.iter().try_fold(claims, |v, step| match v {
            Value::Object(map) => map.get(step),
            Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

/// The steps of a JSON path after its `$`.
fn json_path(mut rest: &str) -> Result<Vec<String>, String> {
    let mut steps = Vec::new();
    while let Some(c) = rest.chars().next() {
        match c {
            '.' => {
                let name_end = rest[1..].find(['.', '[']).map_or(rest.len(), |i| i + 1);
                let name = &rest[1..name_end];
                if name.is_empty() {
                    return Err("a `.` must be followed by a name".to_owned());
                }
                steps.push(name.to_owned());
                rest = &rest[name_end..];
            }
            '[' => {
                let inner = &rest[1..];
                match inner.chars().next() {
                    Some(q @ ('\'' | '"')) => {
                        let mut name = String::new();
                        let mut chars = inner[1..].char_indices();
                        let close = loop {
                            match chars.next() {
                                Some((_, '\\')) => match chars.next() {
                                    Some((_, escaped)) => name.push(escaped),
                                    None => return Err("an unclosed quote".to_owned()),
                                },
                                Some((i, ch)) if ch == q => break i,
                                Some((_, ch)) => name.push(ch),
                                None => return Err("an unclosed quote".to_owned()),
                            }
                        };
                        // `[` + quote + name + quote, then `]`.
                        let after = &inner[1 + close + 1..];
                        rest = after
                            .strip_prefix(']')
                            .ok_or("a quoted name must be followed by `]`")?;
                        steps.push(name);
                    }
                    _ => {
                        let end = inner.find(']').ok_or("an unclosed `[`")?;
                        let index = &inner[..end];
                        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(format!("`[{index}]` is not an index or a quoted name"));
                        }
                        steps.push(index.to_owned());
                        rest = &inner[end + 1..];
                    }
                }
            }
            _ => {
                return Err(format!(
                    "unexpected `{c}` (a path is `$.name`, `$['name']` or `$[0]`)"
                ));
            }
        }
    }
    if steps.is_empty() {
        return Err("the path names no claim".to_owned());
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(path: &str, claims: &Value) -> Option<Value> {
        ClaimPath::parse(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .get(claims)
            .cloned()
    }

    #[test]
    fn names_paths_and_pointers_find_the_same_claims() {
        let claims = json!({
            "sub": "auth0|42",
            "https://example.com/roles": ["admin"],
            "realm_access": {"roles": ["offline_access", "shop-admin"]},
            "https://hasura.io/jwt/claims": {"x-hasura-user-id": "7", "x.y": 1},
        });
        assert_eq!(at("sub", &claims), Some(json!("auth0|42")));
        assert_eq!(
            at("https://example.com/roles", &claims),
            Some(json!(["admin"]))
        );
        assert_eq!(
            at("$.realm_access.roles", &claims),
            Some(json!(["offline_access", "shop-admin"]))
        );
        assert_eq!(
            at("$.realm_access.roles[1]", &claims),
            Some(json!("shop-admin"))
        );
        assert_eq!(
            at(
                "$['https://hasura.io/jwt/claims']['x-hasura-user-id']",
                &claims
            ),
            Some(json!("7"))
        );
        assert_eq!(
            at("$[\"https://hasura.io/jwt/claims\"][\"x.y\"]", &claims),
            Some(json!(1))
        );
        assert_eq!(
            at(
                "/https:~1~1hasura.io~1jwt~1claims/x-hasura-user-id",
                &claims
            ),
            Some(json!("7"))
        );
        assert_eq!(
            at("/realm_access/roles/0", &claims),
            Some(json!("offline_access"))
        );
        assert_eq!(at("$.realm_access.missing", &claims), None);
        assert_eq!(at("$.sub.deeper", &claims), None);
    }

    #[test]
    fn a_malformed_path_is_refused_with_a_reason() {
        for bad in [
            "", "$", "$.", "$..a", "$[", "$['a'", "$['a'x]", "$[x]", "$a", "$.a[1",
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
