//! `eagerql check`: every operation of a frontend's code base checked against the schema and
//! planned, with no database and no server.
//!
//! Inputs are `.graphql`/`.gql` files (operations and fragments may be spread over files, as
//! in a frontend repository: each operation is sent with the fragments it uses, as clients
//! send it) and persisted-operation manifests (`.json`, see [`crate::documents::trusted`]). Each
//! operation goes through the server's own preparer (the same parse, validation, limits and
//! variable errors as a request, with positions mapped back to the file and line they came
//! from) and, for queries, through the same planning-only run the server uses for
//! `x-eagerql-expect-statements` (see [`crate::documents::predict`]), so the count `check` reports is the
//! count the server runs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apollo_compiler::ast;
use apollo_compiler::schema::ExtendedType;
use async_graphql::parser::types::OperationType;
use serde_json::{Map, Value as Json, json};

use crate::documents::predict::{self, Who};
use crate::documents::trusted;
use crate::graphql::operation;
use crate::server::state::AppState;

/// Where a line of an operation's text came from.
#[derive(Clone, Debug)]
struct Segment {
    /// First line of the segment in the operation's text (1-based).
    start: usize,
    /// The file (or `manifest#id`) it came from.
    file: Arc<str>,
    /// Its first line there.
    line: usize,
}

/// One operation to check: its text as a client sends it (the operation, then the fragments
/// it uses), and where each part came from.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The operation's name (`None`: anonymous).
    pub name: Option<String>,
    /// `query`, `mutation` or `subscription`.
    pub kind: &'static str,
    /// The file (or `manifest#id`) of the operation.
    pub file: Arc<str>,
    /// Its line there.
    pub line: usize,
    /// The manifest id, for operations read from a manifest.
    pub id: Option<String>,
    /// The document sent for it.
    pub text: String,
    segments: Vec<Segment>,
}

impl Candidate {
    /// The file, line and column of a position in [`Candidate::text`].
    fn origin(&self, line: usize, column: usize) -> (Arc<str>, usize, usize) {
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.start <= line)
            .or(self.segments.first());
        match seg {
            Some(s) => (
                s.file.clone(),
                s.line + line.saturating_sub(s.start),
                column,
            ),
            None => (self.file.clone(), line, column),
        }
    }
}

/// A problem with an input file itself (unreadable, unparsable, a name defined twice).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// The column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The operations found in the inputs, and the problems met reading them.
#[derive(Debug, Default)]
pub struct Collection {
    /// Operations, in input order.
    pub candidates: Vec<Candidate>,
    /// Problems with the inputs.
    pub problems: Vec<Problem>,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn kind_of(op: &ast::OperationDefinition) -> &'static str {
    match op.operation_type {
        ast::OperationType::Query => "query",
        ast::OperationType::Mutation => "mutation",
        ast::OperationType::Subscription => "subscription",
    }
}

/// The fragments a selection set spreads, directly.
fn spreads(selections: &[ast::Selection], out: &mut Vec<String>) {
    for s in selections {
        match s {
            ast::Selection::Field(f) => spreads(&f.selection_set, out),
            ast::Selection::FragmentSpread(f) => out.push(f.fragment_name.to_string()),
            ast::Selection::InlineFragment(f) => spreads(&f.selection_set, out),
        }
    }
}

/// A definition's text, its file and the line and column it starts at.
#[derive(Clone, Debug)]
struct Located {
    file: Arc<str>,
    line: usize,
    column: usize,
    text: String,
}

fn locate(
    file: &Arc<str>,
    source: &str,
    span: Option<apollo_compiler::parser::SourceSpan>,
) -> Located {
    let (start, end) = span.map_or((0, source.len()), |s| (s.offset(), s.end_offset()));
    let (line, column) = line_col(source, start);
    Located {
        file: file.clone(),
        line,
        column,
        text: source.get(start..end).unwrap_or_default().to_owned(),
    }
}

/// Builds an operation's document from its definition and the fragments it uses (found by
/// name among all files' fragments), keeping where each part came from. Each part keeps its
/// column, so positions map back unchanged.
fn compose(
    op: &Located,
    selections: &[ast::Selection],
    fragments: &HashMap<String, (Located, Vec<String>)>,
) -> (String, Vec<Segment>) {
    let mut text = String::new();
    let mut segments = Vec::new();
    let mut push = |part: &Located, text: &mut String| {
        if !text.is_empty() {
            text.push('\n');
        }
        segments.push(Segment {
            start: text.matches('\n').count() + 1,
            file: part.file.clone(),
            line: part.line,
        });
        text.extend(std::iter::repeat_n(' ', part.column - 1));
        text.push_str(&part.text);
    };
    push(op, &mut text);
    let mut queue = Vec::new();
    spreads(selections, &mut queue);
    let mut seen = HashSet::new();
    let mut i = 0;
    while i < queue.len() {
        let name = queue[i].clone();
        i += 1;
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some((located, uses)) = fragments.get(&name) {
            push(located, &mut text);
            queue.extend(uses.iter().cloned());
        }
    }
    (text, segments)
}

/// The input files under `paths`: files as given (`true`), and, under directories, `.graphql`,
/// `.gql` and `.json` files (`false`; sorted, so the output is stable). Symbolic links are
/// followed only when given: a link inside a directory is skipped, so a link cycle cannot
/// make the search endless.
fn files(paths: &[PathBuf], problems: &mut Vec<Problem>) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, bool)> = paths.iter().rev().map(|p| (p.clone(), true)).collect();
    while let Some((path, given)) = stack.pop() {
        if !path.is_dir() {
            if given || path.is_file() {
                out.push((path, given));
            }
            continue;
        }
        let entries = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) => {
                problems.push(problem(&path.display().to_string(), None, e.to_string()));
                continue;
            }
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let Ok(ty) = e.file_type() else { return false };
                let name = e.file_name();
                let name = name.to_str().unwrap_or("");
                // A frontend's dependencies and VCS metadata are not its operations.
                if ty.is_dir() {
                    return name != "node_modules" && !name.starts_with('.');
                }
                ty.is_file()
                    && matches!(
                        e.path().extension().and_then(|x| x.to_str()),
                        Some("graphql" | "gql" | "json")
                    )
            })
            .map(|e| e.path())
            .collect();
        children.sort();
        stack.extend(children.into_iter().rev().map(|p| (p, false)));
    }
    out
}

/// Whether a `.json` file found in a directory is a manifest (a frontend has many other JSON
/// files: `package.json`, `tsconfig.json`, translations). Apollo's format names itself; a
/// Relay manifest maps ids to GraphQL documents.
fn looks_like_manifest(text: &str) -> bool {
    let Ok(Json::Object(obj)) = serde_json::from_str::<Json>(text) else {
        return false;
    };
    if obj.get("format").and_then(Json::as_str) == Some("apollo-persisted-query-manifest") {
        return true;
    }
    !obj.is_empty()
        && obj.values().all(|v| {
            v.as_str().is_some_and(|d| {
                let d = d.trim_start();
                ["query", "mutation", "subscription", "fragment", "{"]
                    .iter()
                    .any(|k| d.starts_with(k))
            })
        })
}

fn problem(file: &str, at: Option<(usize, usize)>, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_owned(),
        line: at.map(|a| a.0),
        column: at.map(|a| a.1),
        message: message.into(),
    }
}

/// Reads the operations of the inputs at `paths`.
pub fn collect(paths: &[PathBuf]) -> Collection {
    let mut c = Collection::default();
    let mut fragments: HashMap<String, (Located, Vec<String>)> = HashMap::new();
    // Operations of .graphql files, composed once every file's fragments are known.
    let mut pending: Vec<(Located, String, &'static str, Vec<ast::Selection>)> = Vec::new();
    for (path, given) in files(paths, &mut c.problems) {
        let label: Arc<str> = path.display().to_string().into();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                c.problems.push(problem(&label, None, e.to_string()));
                continue;
            }
        };
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            if !given && !looks_like_manifest(&text) {
                continue;
            }
            manifest(&path, &label, &text, &mut c);
            continue;
        }
        // An empty or comment-only file (a placeholder, a file whose operations were moved)
        // defines nothing, which is not an error.
        let blank = text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        });
        if blank {
            continue;
        }
        let doc = match ast::Document::parse(text.as_str(), path.as_path()) {
            Ok(doc) => doc,
            Err(with) => {
                for d in with.errors.iter() {
                    let j = d.to_json();
                    let at = j.locations.first().map(|l| (l.line, l.column));
                    c.problems.push(problem(&label, at, j.message));
                }
                continue;
            }
        };
        for def in &doc.definitions {
            match def {
                ast::Definition::OperationDefinition(op) => {
                    let located = locate(&label, &text, op.location());
                    let name = op.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                    pending.push((located, name, kind_of(op), op.selection_set.clone()));
                }
                ast::Definition::FragmentDefinition(f) => {
                    let located = locate(&label, &text, f.location());
                    let mut uses = Vec::new();
                    spreads(&f.selection_set, &mut uses);
                    if let Some((old, _)) = fragments.get(f.name.as_str()) {
                        c.problems.push(problem(
                            &label,
                            Some((located.line, located.column)),
                            format!(
                                "fragment {} is also defined at {}:{}",
                                f.name, old.file, old.line
                            ),
                        ));
                        continue;
                    }
                    fragments.insert(f.name.to_string(), (located, uses));
                }
                // Type definitions (a schema file beside the operations) are not operations.
                _ => {}
            }
        }
    }
    let mut names: HashMap<String, (Arc<str>, usize)> = HashMap::new();
    for (located, name, kind, selections) in pending {
        if !name.is_empty() {
            if let Some((file, line)) = names.get(&name) {
                c.problems.push(problem(
                    &located.file,
                    Some((located.line, located.column)),
                    format!("operation {name} is also defined at {file}:{line}"),
                ));
                continue;
            }
            names.insert(name.clone(), (located.file.clone(), located.line));
        }
        let (text, segments) = compose(&located, &selections, &fragments);
        c.candidates.push(Candidate {
            name: (!name.is_empty()).then_some(name),
            kind,
            file: located.file.clone(),
            line: located.line,
            id: None,
            text,
            segments,
        });
    }
    c
}

/// The operations of one manifest: each entry's body is a whole document, sent as it is.
fn manifest(path: &Path, label: &Arc<str>, text: &str, c: &mut Collection) {
    let entries = match trusted::parse_manifest(text) {
        Ok(e) => e,
        Err(e) => {
            c.problems.push(problem(label, None, e));
            return;
        }
    };
    let _ = path;
    for entry in entries {
        c.candidates.extend(manifest_candidates(label, &entry));
    }
}

/// The operations of a manifest entry (or of any whole document): one per operation its
/// body defines; an unparsable body is one candidate whose check reports the parse errors.
pub fn manifest_candidates(label: &str, entry: &trusted::ManifestEntry) -> Vec<Candidate> {
    let file: Arc<str> = format!("{label}#{}", entry.id).into();
    let whole = |name: Option<String>, kind: &'static str, line: usize| Candidate {
        name,
        kind,
        file: file.clone(),
        line,
        id: Some(entry.id.clone()),
        text: entry.body.clone(),
        segments: vec![Segment {
            start: 1,
            file: file.clone(),
            line: 1,
        }],
    };
    let Ok(doc) = ast::Document::parse(entry.body.as_str(), "manifest.graphql") else {
        return vec![whole(entry.name.clone(), "query", 1)];
    };
    let ops: Vec<_> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            ast::Definition::OperationDefinition(op) => Some(op),
            _ => None,
        })
        .collect();
    // Every operation of the body: a request may select any of them with `operationName`
    // (the entry's name is only the default).
    if ops.is_empty() {
        return vec![whole(entry.name.clone(), "query", 1)];
    }
    ops.into_iter()
        .map(|op| {
            let line = op
                .location()
                .map_or(1, |s| line_col(&entry.body, s.offset()).0);
            whole(op.name.as_ref().map(|n| n.to_string()), kind_of(op), line)
        })
        .collect()
}

/// An error of one operation, where it is.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpError {
    /// The server's message.
    pub message: String,
    /// Its `extensions.code`.
    pub code: Option<String>,
    /// The file (or `manifest#id`).
    pub file: Option<String>,
    /// The line there.
    pub line: Option<usize>,
    /// The column.
    pub column: Option<usize>,
}

/// What `check` found for one operation.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    /// The operation's name (`null`: anonymous).
    pub name: Option<String>,
    /// `query`, `mutation` or `subscription`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where it is defined.
    pub file: String,
    /// Its line there.
    pub line: usize,
    /// The manifest id, if it came from a manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether it is valid against the schema and within the server's document limits (the
    /// preparer accepts it).
    pub valid: bool,
    /// The SQL statements it runs (queries; `null` for mutations and invalid operations).
    pub statements: Option<usize>,
    /// Whether it needs more statements than the budget.
    pub over_budget: bool,
    /// The plan of each root field.
    pub plan: Vec<Json>,
    /// Values assumed for required variables that were not given (`--variables`).
    pub assumed_variables: Map<String, Json>,
    /// The errors the server would give: the preparer's, or, for a valid query, those its
    /// fields give before any SQL (`FORBIDDEN` for the role checked, a refused argument).
    pub errors: Vec<OpError>,
}

impl Checked {
    /// Valid, refused by none of its fields, and within the budget.
    pub fn ok(&self) -> bool {
        self.valid && self.errors.is_empty() && !self.over_budget
    }
}

/// Most Boolean placeholders whose every combination is planned (`2^N` plans).
const MAX_BOOLEAN_COMBINATIONS: u32 = 6;

/// Checks one operation: prepares it exactly as a request with `variables`, then plans it as
/// `who`. Required variables not given get a placeholder of their type, reported in
/// [`Checked::assumed_variables`]; Boolean ones (which `@skip`/`@include` may read) are
/// planned with every combination of values (up to [`MAX_BOOLEAN_COMBINATIONS`] of them) and
/// the costliest is reported, so a budget holds whatever values the client sends.
pub async fn check(job: Job<'_>, candidate: &Candidate, variables: Map<String, Json>) -> Checked {
    let assumed = placeholders(job.state, candidate, &variables);
    let booleans: Vec<String> = assumed
        .iter()
        .filter(|(_, v)| v.is_boolean())
        .map(|(n, _)| n.clone())
        .take(MAX_BOOLEAN_COMBINATIONS as usize)
        .collect();
    let mut worst: Option<Checked> = None;
    for combination in 0..1u32 << booleans.len() {
        let mut vars = variables.clone();
        let mut shown = Map::new();
        for (name, value) in &assumed {
            let value = match booleans.iter().position(|b| b == name) {
                Some(i) => Json::Bool(combination & (1 << i) != 0),
                None => value.clone(),
            };
            shown.insert(name.clone(), value.clone());
            vars.insert(name.clone(), value);
        }
        let mut c = attempt(job, candidate, vars).await;
        c.assumed_variables = shown;
        let costlier = match &worst {
            None => true,
            Some(w) => c.statements > w.statements || (w.errors.is_empty() && !c.errors.is_empty()),
        };
        if costlier {
            worst = Some(c);
        }
    }
    worst.unwrap_or_else(|| unreachable_checked(candidate))
}

/// A report for an operation no attempt was made for (there is always one).
fn unreachable_checked(candidate: &Candidate) -> Checked {
    Checked {
        name: candidate.name.clone(),
        kind: candidate.kind,
        file: candidate.file.to_string(),
        line: candidate.line,
        id: candidate.id.clone(),
        valid: false,
        statements: None,
        over_budget: false,
        plan: Vec::new(),
        assumed_variables: Map::new(),
        errors: Vec::new(),
    }
}

/// What every operation of a check is planned with.
#[derive(Copy, Clone)]
pub struct Job<'a> {
    /// The server's state (preparer, schema, database).
    pub state: &'a AppState,
    /// Who the operations are planned for.
    pub who: Who,
    /// The most statements an operation may cost.
    pub budget: usize,
}

/// One preparation and plan of `candidate` with `variables`.
async fn attempt(job: Job<'_>, candidate: &Candidate, variables: Map<String, Json>) -> Checked {
    let Job { state, who, budget } = job;
    let mut out = unreachable_checked(candidate);
    let vars = operation::variables(variables);
    let prepared = match state
        .preparer
        .prepare(&candidate.text, candidate.name.as_deref(), &vars)
    {
        Ok(p) => p,
        Err(operation::Refused(errors)) => {
            out.errors = errors.iter().map(|e| op_error(candidate, e)).collect();
            return out;
        }
    };
    if prepared.ty != OperationType::Query {
        out.valid = true;
        return out;
    }
    let prediction = predict::predict(state, who, &prepared).await;
    out.errors = prediction
        .errors
        .iter()
        .map(|e| op_error(candidate, e))
        .collect();
    out.valid = true;
    out.statements = Some(prediction.statements);
    out.over_budget = prediction.statements > budget;
    out.plan = prediction.roots;
    out
}

fn op_error(candidate: &Candidate, e: &async_graphql::ServerError) -> OpError {
    let code = e
        .extensions
        .as_ref()
        .and_then(|x| x.get("code"))
        .and_then(|c| match c {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        });
    let at = e
        .locations
        .first()
        .map(|p| candidate.origin(p.line, p.column));
    OpError {
        message: e.message.clone(),
        code,
        file: Some(
            at.as_ref()
                .map_or_else(|| candidate.file.to_string(), |a| a.0.to_string()),
        ),
        line: at.as_ref().map(|a| a.1),
        column: at.as_ref().map(|a| a.2),
    }
}

/// Placeholder values for the operation's required variables (non-null, no default) that
/// `given` lacks: the smallest valid value of each type.
fn placeholders(
    state: &AppState,
    candidate: &Candidate,
    given: &Map<String, Json>,
) -> Vec<(String, Json)> {
    let Ok(doc) = ast::Document::parse(candidate.text.as_str(), "operation.graphql") else {
        return Vec::new();
    };
    let op = doc.definitions.iter().find_map(|d| match d {
        ast::Definition::OperationDefinition(op)
            if op.name.as_ref().map(|n| n.as_str()) == candidate.name.as_deref() =>
        {
            Some(op)
        }
        _ => None,
    });
    let Some(op) = op else { return Vec::new() };
    let schema = state.preparer.schema();
    op.variables
        .iter()
        .filter(|v| v.ty.is_non_null() && v.default_value.is_none())
        .filter(|v| !given.contains_key(v.name.as_str()))
        .map(|v| (v.name.to_string(), placeholder(schema, &v.ty, 0)))
        .collect()
}

fn placeholder(schema: &apollo_compiler::Schema, ty: &ast::Type, depth: usize) -> Json {
    if depth > 8 {
        return Json::Null;
    }
    match ty {
        ast::Type::List(_) | ast::Type::NonNullList(_) => {
            json!([placeholder(schema, ty.item_type(), depth + 1)])
        }
        ast::Type::Named(_) | ast::Type::NonNullNamed(_) => {
            let name = ty.inner_named_type().as_str();
            match (name, schema.types.get(name)) {
                ("Int", _) => json!(1),
                ("Float", _) => json!(1.0),
                ("Boolean", _) => json!(false),
                ("ID", _) => json!("1"),
                ("String", _) => json!("x"),
                ("Decimal", _) => json!("1.00"),
                ("Date", _) => json!("2026-01-01"),
                ("DateTime", _) => json!("2026-01-01T00:00:00Z"),
                (_, Some(ExtendedType::Enum(e))) => e
                    .values
                    .keys()
                    .next()
                    .map_or(Json::Null, |v| json!(v.as_str())),
                (_, Some(ExtendedType::InputObject(io))) => {
                    let mut obj = Map::new();
                    for (field, def) in &io.fields {
                        if def.ty.is_non_null() && def.default_value.is_none() {
                            obj.insert(field.to_string(), placeholder(schema, &def.ty, depth + 1));
                        }
                    }
                    Json::Object(obj)
                }
                _ => json!("x"),
            }
        }
    }
}

/// The report of a whole run.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// The statement budget operations were held to (`None`: no limit).
    pub budget: Option<usize>,
    /// Every operation.
    pub operations: Vec<Checked>,
    /// Problems with the inputs.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether every operation is valid and within budget, and the inputs had no problem
    /// (and held at least one operation).
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && !self.operations.is_empty()
            && self.operations.iter().all(Checked::ok)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Json {
        let mut v = serde_json::to_value(self).unwrap_or(Json::Null);
        if let Json::Object(obj) = &mut v {
            obj.insert("ok".to_owned(), self.ok().into());
        }
        v
    }

    /// The report as text: a line per operation with its count, its plan below it, errors
    /// as `file:line:column: message [CODE]`.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for p in &self.problems {
            let _ = match (p.line, p.column) {
                (Some(l), Some(c)) => writeln!(out, "{}:{l}:{c}: error: {}", p.file, p.message),
                _ => writeln!(out, "{}: error: {}", p.file, p.message),
            };
        }
        for op in &self.operations {
            let name = op.name.as_deref().unwrap_or("(anonymous)");
            let verdict = match (op.valid, op.statements) {
                (false, _) => "INVALID".to_owned(),
                (true, _) if !op.errors.is_empty() => "REFUSED".to_owned(),
                (true, Some(n)) if op.over_budget => {
                    format!("{n} statements: OVER BUDGET ({})", self.budget.unwrap_or(0))
                }
                (true, Some(1)) => "1 statement".to_owned(),
                (true, Some(n)) => format!("{n} statements"),
                (true, None) => "valid (mutations are not planned ahead)".to_owned(),
            };
            let _ = writeln!(
                out,
                "{}:{}: {} {name}: {verdict}",
                op.file, op.line, op.kind
            );
            for e in &op.errors {
                let code = e
                    .code
                    .as_deref()
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default();
                let file = e.file.as_deref().unwrap_or(&op.file);
                let _ = match (e.line, e.column) {
                    (Some(l), Some(c)) => {
                        writeln!(out, "  {file}:{l}:{c}: error: {}{code}", e.message)
                    }
                    _ => writeln!(out, "  {file}: error: {}{code}", e.message),
                };
            }
            if !op.assumed_variables.is_empty() {
                let _ = writeln!(
                    out,
                    "  assuming {}",
                    Json::Object(op.assumed_variables.clone())
                );
            }
            for root in &op.plan {
                plan_text(&mut out, root);
            }
        }
        let invalid = self.operations.iter().filter(|o| !o.valid).count();
        let refused = self
            .operations
            .iter()
            .filter(|o| o.valid && !o.errors.is_empty())
            .count();
        let over = self.operations.iter().filter(|o| o.over_budget).count();
        let _ = writeln!(
            out,
            "{} operations: {invalid} invalid, {refused} refused, {over} over {}{}",
            self.operations.len(),
            self.budget
                .map_or_else(|| "no budget".to_owned(), |b| format!("the budget of {b}")),
            if self.problems.is_empty() {
                String::new()
            } else {
                format!(", {} input problems", self.problems.len())
            }
        );
        out
    }
}

fn plan_text(out: &mut String, root: &Json) {
    use std::fmt::Write;
    let field = root.get("field").and_then(Json::as_str).unwrap_or("?");
    let n = root.get("statements").and_then(Json::as_u64).unwrap_or(0);
    let s = if n == 1 { "" } else { "s" };
    let _ = writeln!(out, "  {field}: {n} statement{s}");
    match root.get("plan") {
        Some(plan) if plan.get("type").is_some() => {
            let _ = writeln!(out, "    {}", fields_text(plan));
            node_text(out, plan, 2);
        }
        // A connection (`totalCount`, `node`), a report or an aggregate: its parts, with any
        // entity node among them drawn as a tree.
        Some(Json::Object(parts)) => {
            for (k, v) in parts {
                if v.get("type").is_some() {
                    let _ = writeln!(out, "    {k}: {}", fields_text(v));
                    node_text(out, v, 2);
                } else {
                    let _ = writeln!(out, "    {k}: {v}");
                }
            }
        }
        _ => {}
    }
}

fn fields_text(node: &Json) -> String {
    let ty = node.get("type").and_then(Json::as_str).unwrap_or("?");
    let fields: Vec<&str> = node
        .get("fields")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    format!("{ty} {{{}}}", fields.join(" "))
}

fn node_text(out: &mut String, node: &Json, depth: usize) {
    use std::fmt::Write;
    let pad = "  ".repeat(depth);
    let list = |k: &str| {
        node.get(k)
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
    };
    // Joins (no arguments: they are the parent's statement) and batches draw alike.
    for (kind, key) in [("join", "joins"), ("batch", "batches")] {
        for edge in list(key) {
            let field = edge.get("field").and_then(Json::as_str).unwrap_or("?");
            let args = edge.get("arguments").map(args_text).unwrap_or_default();
            let child = edge.get("node").cloned().unwrap_or(Json::Null);
            let _ = writeln!(out, "{pad}  {kind} {field}{args}: {}", fields_text(&child));
            node_text(out, &child, depth + 1);
        }
    }
    for a in list("aggregates") {
        let field = a.get("field").and_then(Json::as_str).unwrap_or("?");
        let args = a.get("arguments").map(args_text).unwrap_or_default();
        let _ = writeln!(out, "{pad}  aggregate {field}{args}");
    }
}

fn args_text(args: &Json) -> String {
    match args.as_object() {
        Some(m) if !m.is_empty() => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("({})", parts.join(", "))
        }
        _ => String::new(),
    }
}

/// Checks every operation of `collection`. `variables` maps operation names to the
/// variables to check them with.
pub async fn run(
    state: &AppState,
    who: Who,
    collection: Collection,
    variables: &Map<String, Json>,
    budget: usize,
) -> Report {
    let mut problems = collection.problems;
    // A name in the variables file that no operation has is a typo, not a default.
    for name in variables.keys() {
        if !collection
            .candidates
            .iter()
            .any(|c| c.name.as_deref() == Some(name.as_str()))
        {
            problems.push(problem(
                "--variables",
                None,
                format!("no operation is named {name}"),
            ));
        }
    }
    let mut operations = Vec::with_capacity(collection.candidates.len());
    for candidate in &collection.candidates {
        let vars = candidate
            .name
            .as_deref()
            .and_then(|n| variables.get(n))
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        operations.push(check(Job { state, who, budget }, candidate, vars).await);
    }
    if collection.candidates.is_empty() && problems.is_empty() {
        problems.push(problem(
            "(inputs)",
            None,
            "no operations found in the paths given",
        ));
    }
    Report {
        budget: (budget != usize::MAX).then_some(budget),
        operations,
        problems,
    }
}

/// Checks every trusted document (`EAGERQL_TRUSTED_DOCUMENTS`) as the server starts: each
/// operation must be valid and within the statement budget, or the server does not start.
/// Planned as an administrator, so that permissions (which depend on who asks) refuse
/// nothing; the errors a field gives for placeholder variables are not the document's.
/// Returns the operations checked.
pub async fn trusted_documents(state: &AppState) -> Result<usize, String> {
    let budget = state.config.budget().unwrap_or(usize::MAX);
    let who = Who {
        viewer: crate::model::Viewer::OPERATOR,
        client: None,
    };
    let mut checked = 0;
    for (path, entry) in state.trusted.entries() {
        for candidate in manifest_candidates(&path.display().to_string(), entry) {
            let job = Job { state, who, budget };
            let c = check(job, &candidate, Map::new()).await;
            let name = c.name.as_deref().unwrap_or("(anonymous)");
            if !c.valid {
                let why: Vec<String> = c
                    .errors
                    .iter()
                    .map(|e| match e.line {
                        Some(l) => format!("line {l}: {}", e.message),
                        None => e.message.clone(),
                    })
                    .collect();
                return Err(format!(
                    "trusted document {} is invalid (checked for operation {name}): {}",
                    c.file,
                    why.join("; ")
                ));
            }
            if c.over_budget {
                return Err(format!(
                    "trusted document {}: operation {name} needs {} SQL statements, over the \
                     budget of {budget} (EAGERQL_STATEMENT_BUDGET)",
                    c.file,
                    c.statements.unwrap_or_default()
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_back_to_each_part() {
        let dir = std::env::temp_dir().join(format!("eagerql-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.graphql"),
            "# top\nquery A {\n  products { ...P }\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("b.graphql"),
            "\n\nfragment P on Product {\n  id\n  nope\n}\nfragment Unused on Product { id }\n",
        )
        .unwrap();
        let c = collect(std::slice::from_ref(&dir));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.candidates.len(), 1);
        let a = &c.candidates[0];
        assert_eq!(a.name.as_deref(), Some("A"));
        assert_eq!(a.line, 2);
        assert!(a.text.contains("fragment P on Product"));
        assert!(!a.text.contains("Unused"));
        // `nope` is line 5 of b.graphql; in the composed text (three lines of A, then P) it
        // is line 6.
        assert_eq!(a.text.lines().nth(5), Some("  nope"));
        let (file, line, col) = a.origin(6, 3);
        assert!(file.ends_with("b.graphql"), "{file}");
        assert_eq!((line, col), (5, 3));
        let (file, line, _) = a.origin(2, 3);
        assert!(file.ends_with("a.graphql"));
        assert_eq!(line, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn duplicate_names_are_problems() {
        let dir = std::env::temp_dir().join(format!("eagerql-check-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.graphql"), "query A { products { id } }\n").unwrap();
        std::fs::write(
            dir.join("b.graphql"),
            "query A { products { name } }\n{ x }\n",
        )
        .unwrap();
        let c = collect(std::slice::from_ref(&dir));
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert!(c.problems[0].message.contains("also defined"));
        assert_eq!(c.candidates.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
