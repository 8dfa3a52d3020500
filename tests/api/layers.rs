//! The crate's source files import each other without cycles: each `crate::...` or
//! `super::...` path (also inside `use a::{b, c}` groups) is an edge to the file that defines
//! the module it names; the crate's facades (`lib.rs`, `main.rs`) only gather its modules and
//! are left out, while a `mod.rs` is checked like any file (several hold code: `auth`,
//! `server::http`, `planner`, `graphql`). A cycle fails the test with the files in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["graphql", "operation"]`) -> file.
fn source_files(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.insert(module_of(root, &path), path);
            }
        }
    }
    out
}

fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(root)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn is_facade(file: &Path) -> bool {
    matches!(
        file.file_name().and_then(|n| n.to_str()),
        Some("lib.rs" | "main.rs")
    )
}

/// The source without line comments and without its `#[cfg(test)]` part.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path starting with `crate` or `super` in `src`, as (head, segments), with the
/// members of `{...}` groups as paths of their own.
fn paths(src: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts = |word: &str| {
            let w: Vec<char> = word.chars().collect();
            chars[i..].starts_with(&w)
                && (i == 0 || !is_ident(chars[i - 1]))
                && chars.get(i + w.len()) == Some(&':')
        };
        let head = if starts("crate") {
            "crate"
        } else if starts("super") {
            "super"
        } else {
            i += 1;
            continue;
        };
        i += head.len();
        let mut segs = Vec::new();
        while chars[i..].starts_with(&[':', ':']) {
            i += 2;
            if chars.get(i) == Some(&'{') {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '}')
                    .map_or(chars.len(), |p| i + p);
                let group: String = chars[i + 1..end].iter().collect();
                for item in group.split(',') {
                    let item = item.split(" as ").next().unwrap_or("").trim();
                    if !item.is_empty() && item != "self" && !item.contains('{') {
                        let mut path = segs.clone();
                        path.extend(item.split("::").map(|s| s.trim().to_owned()));
                        out.push((head.to_owned(), path));
                    }
                }
                i = end;
                break;
            }
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            if i == start {
                break;
            }
            segs.push(chars[start..i].iter().collect());
        }
        out.push((head.to_owned(), segs));
    }
    out
}

fn resolve<'a>(files: &'a BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<&'a PathBuf> {
    (1..=path.len()).rev().find_map(|n| files.get(&path[..n]))
}

#[test]
fn source_files_import_each_other_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files(&root);
    let mut edges: BTreeMap<&PathBuf, BTreeSet<&PathBuf>> = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let set = edges.entry(file).or_default();
        for (head, segs) in paths(&code(&text)) {
            let mut path: Vec<String> = if head == "crate" {
                Vec::new()
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let mut segs = segs.as_slice();
            while segs.first().is_some_and(|s| s == "super") {
                path.pop();
                segs = &segs[1..];
            }
            path.extend(segs.iter().cloned());
            if let Some(target) = resolve(&files, &path)
                && target != file
                && !is_facade(target)
            {
                set.insert(target);
            }
        }
    }
    // Strongly connected components (Tarjan), facades left out.
    struct Tarjan<'a> {
        edges: &'a BTreeMap<&'a PathBuf, BTreeSet<&'a PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        cycles: Vec<Vec<&'a PathBuf>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a PathBuf) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for &w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    self.cycles.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        cycles: Vec::new(),
    };
    for file in files.values().filter(|f| !is_facade(f)) {
        if !t.index.contains_key(file) {
            t.visit(file);
        }
    }
    assert!(
        files.len() > 40,
        "the source files were found: {}",
        files.len()
    );
    let report: Vec<String> = t
        .cycles
        .iter()
        .map(|c| {
            c.iter()
                .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect();
    assert!(report.is_empty(), "import cycles: {report:#?}");
}

#[test]
fn the_cycle_check_sees_paths_and_groups() {
    let found =
        paths("use crate::db::{Session, load::Loaded as L};\nlet x = super::super::a::f();");
    assert!(found.contains(&("crate".to_owned(), vec!["db".into(), "Session".into()])));
    assert!(found.contains(&(
        "crate".to_owned(),
        vec!["db".into(), "load".into(), "Loaded".into()]
    )));
    assert!(found.contains(&(
        "super".to_owned(),
        vec!["super".into(), "a".into(), "f".into()]
    )));
}
