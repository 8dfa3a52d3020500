//! Turns a request into the operation the executor runs, following the GraphQL specification
//! where the executor would not.
//!
//! [`Preparer::prepare`] parses the document (with token and nesting limits), validates it
//! against the schema with a complete implementation of the specification's validation rules,
//! selects the operation and coerces the variable values (`CoerceVariableValues`). It then
//! rewrites the operation into a *canonical* document: the specification's `CollectFields`
//! applied at every level (fragments inlined when their type applies, `@skip`/`@include`
//! evaluated with the coerced variables, fields with the same response key merged into one
//! field whose sub-selection is the union of theirs, in first-occurrence order), and every
//! variable replaced by its coerced value; an argument whose variable was not provided (and
//! has no default) is left out, so the argument's own default applies.
//!
//! The executor then runs a document with one field per response key, no fragments, no
//! directives and no variables, so each response key is resolved exactly once (one plan, one
//! set of statements) and nothing depends on how the executor merges or orders results.
//! [`finish`] puts the response's keys in the order of the canonical selection sets and
//! removes the placeholder that keeps an emptied selection set an object (`{}`) rather than
//! `null`.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use apollo_compiler::ast;
use apollo_compiler::executable::{self, Selection};
use apollo_compiler::parser::{Parser, SourceMap};
use apollo_compiler::response::{JsonMap, JsonValue};
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::validation::Valid;
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType,
    Selection as GqlSelection, SelectionSet, Type, VariableDefinition,
};
use async_graphql::{Name, Pos, Positioned, ServerError, Value};

use crate::documents::cache::Bounded;
use crate::model::Viewer;
use crate::planner::Planned;

/// The alias of the placeholder field added to a selection set that `@skip`/`@include` left
/// empty: the object still resolves (or is `null`), and [`finish`] removes the key.
pub const EMPTY_SELECTION_KEY: &str = "__eagerqlEmpty";

/// Limits on the work one document may cost before it runs. Each is checked on the text or
/// on the tree as it is built, so a hostile document costs work in proportion to its size and
/// the limits, never to what its fragments would expand to.
#[derive(Copy, Clone, Debug)]
pub struct DocumentLimits {
    /// Most lexical tokens in a document.
    pub max_tokens: usize,
    /// Deepest syntactic nesting the parser accepts.
    pub max_nesting: usize,
    /// Most aliased fields in a document.
    pub max_aliases: usize,
    /// Most directives in a document.
    pub max_directives: usize,
    /// Deepest field nesting of the operation (the root field is level 1), outside
    /// introspection.
    pub max_depth: usize,
    /// Deepest field nesting inside `__schema` and `__type` (the standard introspection query
    /// needs 13).
    pub max_introspection_depth: usize,
    /// Most fields of the canonical operation (after fragments are inlined).
    pub max_fields: usize,
    /// Largest complexity of the canonical operation: one point per selected field.
    pub max_complexity: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits {
            max_tokens: 5_000,
            max_nesting: 64,
            max_aliases: 30,
            max_directives: 50,
            max_depth: 12,
            max_introspection_depth: 20,
            max_fields: 2_000,
            max_complexity: 2_000,
        }
    }
}

/// An operation ready to execute.
#[derive(Debug)]
pub struct Prepared {
    /// Query or mutation.
    pub ty: OperationType,
    /// The operation's name (`None`: anonymous).
    pub name: Option<String>,
    /// The canonical document: one operation, one field per response key, no fragments,
    /// directives or variables.
    pub document: ExecutableDocument,
    /// The response keys of every selection set of the canonical document, in order.
    pub shape: Arc<Shape>,
    /// Whether any root field reads data (not only `__typename` or introspection).
    pub reads_data: bool,
    /// The coerced values of the variables the canonical document still refers to (those
    /// that are a whole argument's value: bulk input is handed over once, not copied into
    /// the document).
    pub variables: async_graphql::Variables,
    /// The canonical form this operation runs.
    pub form: Form,
}

/// Which canonical form a prepared operation runs: two requests with the same form, the
/// same variables and the same viewer plan the same statements.
#[derive(Clone, Debug)]
pub struct Form(Arc<Canonical>);

impl Form {
    /// Whether both are the same form (not merely equal text).
    pub fn same(&self, other: &Form) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// An identity for hashing, valid while the form is held.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Roughly the bytes the form holds.
    pub fn weight(&self) -> usize {
        self.0.weight
    }

    /// Where the plan of the root field with response key `key` is kept: `None` when its
    /// plan depends on the request's variables (its sub-selection refers to one), and not
    /// only on the form. The first request of the form that plans the field keeps it.
    pub fn root_plan(&self, key: &str) -> Option<&OnceLock<Arc<Planned>>> {
        let (_, slot) = self.0.roots.iter().find(|(k, _)| k.as_str() == key)?;
        slot.as_ref()
    }
}

/// The response keys of a canonical selection set, in order, each with its field's type and
/// the shape of its own sub-selection.
#[derive(Debug, Default)]
pub struct Shape(Vec<(Name, OutType, Shape)>);

impl Shape {
    /// The number of response keys of the selection set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the selection set has no response key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The wrapping of a field's type: what [`finish`] needs to propagate nulls.
#[derive(Debug, Clone)]
pub enum OutType {
    /// A named type.
    Named {
        /// `T!`
        non_null: bool,
    },
    /// A list.
    List {
        /// `[T]!`
        non_null: bool,
        /// The items' type.
        item: Box<OutType>,
    },
    /// `__Schema.description`: the schema has none, so it is `null` (the executor answers
    /// with the text describing the `__Schema` type itself, which GraphiQL and code
    /// generators would show as this schema's description).
    SchemaDescription,
}

impl OutType {
    fn of(ty: &ast::Type) -> OutType {
        match ty {
            ast::Type::Named(_) => OutType::Named { non_null: false },
            ast::Type::NonNullNamed(_) => OutType::Named { non_null: true },
            ast::Type::List(item) => OutType::List {
                non_null: false,
                item: Box::new(OutType::of(item)),
            },
            ast::Type::NonNullList(item) => OutType::List {
                non_null: true,
                item: Box::new(OutType::of(item)),
            },
        }
    }

    fn non_null(&self) -> bool {
        match self {
            OutType::Named { non_null } | OutType::List { non_null, .. } => *non_null,
            OutType::SchemaDescription => false,
        }
    }
}

/// Plans of prepared queries already made, by canonical form, variables and viewer: plans
/// are pure (the same form, variables and viewer plan the same statements), so a repeated
/// query that must be planned ahead (several root fields under the statement budget,
/// `x-eagerql-expect-statements`, `x-eagerql-debug: plan`) is planned once, not run through
/// the executor twice each time. Bounded like the document caches.
pub struct Plans {
    cache: Bounded<Arc<Predicted>, u64>,
    hasher: foldhash::quality::RandomState,
}

impl std::fmt::Debug for Plans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plans").field("cache", &self.cache).finish()
    }
}

/// A kept prediction, with what it was made for (compared on a hit: the key is a hash).
struct Predicted {
    form: Form,
    viewer: Viewer,
    variables: String,
    statements: usize,
    roots: Vec<serde_json::Value>,
}

impl Plans {
    /// At most `size.entries` plans of at most `size.bytes` in all.
    pub fn new(size: CacheSize) -> Self {
        Plans {
            cache: Bounded::new(size.entries, size.bytes),
            hasher: Default::default(),
        }
    }

    fn key(&self, form: &Form, viewer: Viewer, variables: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((form.id(), viewer, variables))
    }

    /// The statements and root plans kept for `form` run by `viewer` with `variables` (the
    /// prepared operation's variables as JSON).
    pub fn get(
        &self,
        form: &Form,
        viewer: Viewer,
        variables: &str,
    ) -> Option<(usize, Vec<serde_json::Value>)> {
        let p = self.cache.get(&self.key(form, viewer, variables))?;
        (p.form.same(form) && p.viewer == viewer && p.variables == variables)
            .then(|| (p.statements, p.roots.clone()))
    }

    /// Keeps a plan (see [`Plans::get`]).
    pub fn keep(
        &self,
        form: &Form,
        viewer: Viewer,
        variables: String,
        statements: usize,
        roots: &[serde_json::Value],
    ) {
        let key = self.key(form, viewer, &variables);
        let weight = form.weight()
            + variables.len()
            + roots.iter().map(|r| r.to_string().len()).sum::<usize>();
        let kept = Predicted {
            form: form.clone(),
            viewer,
            variables,
            statements,
            roots: roots.to_vec(),
        };
        self.cache.insert(key, Arc::new(kept), weight);
    }
}

/// Why a request cannot run. Each is a request error: the response has no `data`.
#[derive(Debug)]
pub struct Refused(pub Vec<ServerError>);

/// Validates and canonicalises operations against the schema.
pub struct Preparer {
    schema: Valid<apollo_compiler::Schema>,
    limits: DocumentLimits,
    /// Parsed and validated documents by the SHA-256 of their text: a repeated document
    /// (trusted, persisted or sent in full) skips parsing, the limits and validation. Only
    /// what passed them is kept. Coercing and checking the variables runs on every request;
    /// the canonical rewrite once per form (see `forms`).
    documents: Bounded<Arc<Valid<executable::ExecutableDocument>>>,
    /// Operations by their document's text and operation name: a repeated request skips the
    /// document's hash and selecting its operation.
    operations: Bounded<Arc<Operation>, u64>,
    /// Canonical forms by operation and the values of the variables that change them (see
    /// [`Operation`]), weighed by their size: a repeated request (the same document, new ids
    /// in its variables) skips the canonical rewrite, and only coerces and checks its
    /// variables.
    forms: Bounded<Arc<Canonical>, u64>,
    /// The keys of both caches (keyed by process, so a client cannot aim at a bucket).
    hasher: foldhash::quality::RandomState,
}

/// A document's operation. Its canonical forms differ by the variables that change the
/// canonical document (those in `@skip`/`@include` or inside a list or object value) and by
/// which variables are given at all; a variable that is a whole argument's value stays a
/// variable, so its value does not change the form.
#[derive(Debug)]
struct Operation {
    /// The document's text, compared on a hit (the key is a hash).
    text: Box<str>,
    /// The operation name asked for.
    name: Option<String>,
    doc: Arc<Valid<executable::ExecutableDocument>>,
    /// Variables whose values change the canonical document.
    shaping: HashSet<String>,
}

/// An operation in canonical form, without the request's variable values.
#[derive(Debug)]
struct Canonical {
    /// The operation and the form key it was made for (compared on a hit: the key is a
    /// hash). Holding the operation keeps its address, part of the key, from being reused.
    op: Arc<Operation>,
    form: String,
    ty: OperationType,
    name: Option<String>,
    document: ExecutableDocument,
    shape: Arc<Shape>,
    reads_data: bool,
    /// The variables the document still refers to (whole argument values), in order.
    passed: Vec<Name>,
    /// Each root field's response key, and its plan once made when the plan depends on the
    /// form alone (see [`Form::root_plan`]).
    roots: Vec<(Name, Option<OnceLock<Arc<Planned>>>)>,
    /// Roughly the bytes the form holds.
    weight: usize,
}

impl Operation {
    /// What tells this operation's canonical forms apart for the coerced `vars`: which
    /// variables are given, and the values of those that change the document.
    fn form_key(&self, op: &executable::Operation, vars: &JsonMap) -> String {
        let mut key = String::new();
        for def in &op.variables {
            match vars.get(def.name.as_str()) {
                None => key.push('-'),
                Some(v) if self.shaping.contains(def.name.as_str()) => {
                    key.push('=');
                    key.push_str(&serde_json::to_string(v).unwrap_or_default());
                    key.push('\u{0}');
                }
                Some(_) => key.push('+'),
            }
        }
        key
    }
}

/// The variables of a document whose values change its canonical form: those inside
/// directives' arguments and inside list or object values, anywhere in the document (a
/// superset is safe: it only splits forms that would be equal).
fn shaping_variables(doc: &executable::ExecutableDocument) -> HashSet<String> {
    fn value(v: &ast::Value, out: &mut HashSet<String>) {
        match v {
            ast::Value::Variable(name) => {
                out.insert(name.to_string());
            }
            ast::Value::List(items) => items.iter().for_each(|i| value(i, out)),
            ast::Value::Object(fields) => fields.iter().for_each(|(_, f)| value(f, out)),
            _ => {}
        }
    }
    fn directives(list: &executable::DirectiveList, out: &mut HashSet<String>) {
        for d in list.iter() {
            for a in &d.arguments {
                value(&a.value, out);
            }
        }
    }
    fn set(sel: &executable::SelectionSet, out: &mut HashSet<String>) {
        for s in &sel.selections {
            match s {
                Selection::Field(f) => {
                    directives(&f.directives, out);
                    for a in &f.arguments {
                        // A whole argument that is a variable does not change the form.
                        if !matches!(a.value.as_ref(), ast::Value::Variable(_)) {
                            value(&a.value, out);
                        }
                    }
                    set(&f.selection_set, out);
                }
                Selection::FragmentSpread(f) => directives(&f.directives, out),
                Selection::InlineFragment(f) => {
                    directives(&f.directives, out);
                    set(&f.selection_set, out);
                }
            }
        }
    }
    let mut out = HashSet::new();
    for op in doc.operations.iter() {
        directives(&op.directives, &mut out);
        set(&op.selection_set, &mut out);
    }
    for f in doc.fragments.values() {
        directives(&f.directives, &mut out);
        set(&f.selection_set, &mut out);
    }
    out
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("limits", &self.limits)
            .field("documents", &self.documents)
            .finish()
    }
}

/// How many prepared documents a [`Preparer`] keeps, and how many bytes of their text.
#[derive(Copy, Clone, Debug)]
pub struct CacheSize {
    /// Most documents.
    pub entries: usize,
    /// Most bytes of document text (the parsed form is a small multiple of it).
    pub bytes: usize,
}

fn request_error(message: impl Into<String>, pos: Option<Pos>, code: &str) -> ServerError {
    let mut err = ServerError::new(message, pos);
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    err
}

fn pos_of(
    location: Option<apollo_compiler::parser::SourceSpan>,
    sources: &SourceMap,
) -> Option<Pos> {
    location.and_then(|l| l.line_column(sources)).map(|lc| Pos {
        line: lc.line,
        column: lc.column,
    })
}

impl Preparer {
    /// A preparer for the schema whose SDL is `sdl`, keeping up to `cache` validated
    /// documents.
    pub fn new(sdl: &str, limits: DocumentLimits, cache: CacheSize) -> Result<Self, String> {
        let schema = apollo_compiler::Schema::parse_and_validate(sdl, "schema.graphql")
            .map_err(|e| e.errors.to_string())?;
        Ok(Preparer {
            schema,
            limits,
            documents: Bounded::new(cache.entries, cache.bytes),
            operations: Bounded::new(cache.entries, cache.bytes),
            forms: Bounded::new(cache.entries, cache.bytes),
            hasher: Default::default(),
        })
    }

    /// The schema operations are validated against.
    pub fn schema(&self) -> &apollo_compiler::Schema {
        &self.schema
    }

    /// Requests whose document was found validated (as a prepared operation, or as a
    /// document), and those whose document was parsed and validated.
    pub fn cache_hits_and_misses(&self) -> (u64, u64) {
        let (op_hits, _) = self.operations.hits_and_misses();
        let (doc_hits, doc_misses) = self.documents.hits_and_misses();
        (op_hits + doc_hits, doc_misses)
    }

    /// Parses, checks the limits of and validates `query`, or takes it from the cache.
    fn validated(
        &self,
        query: &str,
    ) -> Result<Arc<Valid<executable::ExecutableDocument>>, Refused> {
        let key = crate::documents::persisted::hash_of(query);
        if let Some(doc) = self.documents.get(&key) {
            return Ok(doc);
        }
        let mut parser = Parser::new()
            .token_limit(self.limits.max_tokens)
            .recursion_limit(self.limits.max_nesting);
        let ast = parser.parse_ast(query, "query.graphql");
        let too_big = parser.tokens_reached() > self.limits.max_tokens
            || parser.recursion_reached() > self.limits.max_nesting;
        let ast = match ast {
            Ok(ast) => ast,
            Err(with) => {
                let code = if too_big {
                    "LIMIT_EXCEEDED"
                } else {
                    "GRAPHQL_PARSE_FAILED"
                };
                return Err(Refused(diagnostics(&with.errors, code)));
            }
        };
        count_document(&ast, &self.limits)?;
        let doc = ast
            .to_executable_validate(&self.schema)
            .map_err(|with| Refused(diagnostics(&with.errors, "GRAPHQL_VALIDATION_FAILED")))?;
        let doc = Arc::new(doc);
        self.documents.insert(key, doc.clone(), query.len());
        Ok(doc)
    }

    /// The operation `operation_name` of `query`, from the cache or validated now.
    fn operation(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<Operation>, Refused> {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one((query, operation_name));
        if let Some(op) = self.operations.get(&key)
            && *op.text == *query
            && op.name.as_deref() == operation_name
        {
            return Ok(op);
        }
        let doc = self.validated(query)?;
        let op = Arc::new(Operation {
            text: query.into(),
            name: operation_name.map(str::to_owned),
            shaping: shaping_variables(&doc),
            doc,
        });
        self.operations.insert(key, op.clone(), query.len());
        Ok(op)
    }

    /// Parses, validates and canonicalises `query`'s selected operation with `variables`.
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: &JsonMap,
    ) -> Result<Prepared, Refused> {
        let entry = self.operation(query, operation_name)?;
        let doc = &*entry.doc;
        let sources = &doc.sources;
        let op = doc.operations.get(operation_name).map_err(|e| {
            Refused(vec![request_error(
                e.message().to_string(),
                pos_of(e.location(), sources),
                "OPERATION_RESOLUTION_FAILURE",
            )])
        })?;
        let vars = apollo_compiler::request::coerce_variable_values(&self.schema, op, variables)
            .map_err(|e| {
                Refused(vec![request_error(
                    e.message().to_string(),
                    pos_of(e.location(), sources),
                    "BAD_USER_INPUT",
                )])
            })?;
        for def in &op.variables {
            if let Some(v) = vars.get(def.name.as_str()) {
                check_scalars(&self.schema, &def.ty, v).map_err(|m| {
                    Refused(vec![request_error(
                        format!("variable ${}: {m}", def.name),
                        pos_of(def.location(), sources),
                        "BAD_USER_INPUT",
                    )])
                })?;
            }
        }
        let form_key = entry.form_key(op, &vars);
        let key = {
            use std::hash::BuildHasher;
            self.hasher
                .hash_one((Arc::as_ptr(&entry) as usize, &form_key))
        };
        let form = match self.forms.get(&key) {
            Some(form) if Arc::ptr_eq(&form.op, &entry) && form.form == form_key => form,
            _ => {
                let form = Arc::new(self.canonical(&entry, op, &vars, form_key)?);
                self.forms.insert(key, form.clone(), form.weight);
                form
            }
        };
        let passed: IndexMap<Name, Value> = form
            .passed
            .iter()
            .filter_map(|name| Some((name.clone(), json(vars.get(name.as_str())?))))
            .collect();
        Ok(Prepared {
            ty: form.ty,
            name: form.name.clone(),
            document: form.document.clone(),
            shape: form.shape.clone(),
            reads_data: form.reads_data,
            variables: async_graphql::Variables::from_value(Value::Object(passed)),
            form: Form(form),
        })
    }

    /// The canonical form of `entry`'s operation `op` for the coerced `vars`, whose form key
    /// is `form`.
    fn canonical(
        &self,
        entry: &Arc<Operation>,
        op: &apollo_compiler::Node<executable::Operation>,
        vars: &Valid<JsonMap>,
        form: String,
    ) -> Result<Canonical, Refused> {
        let doc = &*entry.doc;
        let sources = &doc.sources;
        let ty = match op.operation_type {
            ast::OperationType::Query => OperationType::Query,
            ast::OperationType::Mutation => OperationType::Mutation,
            ast::OperationType::Subscription => OperationType::Subscription,
        };
        let mut canon = Canon {
            schema: &self.schema,
            doc,
            vars,
            fields: 0,
            limits: self.limits,
            passed: IndexMap::new(),
        };
        let (root, shape) = canon
            .selection_set(&op.selection_set.ty, &[&op.selection_set], Level::root())
            .map_err(|e| Refused(vec![e]))?;
        // The variables the canonical document still refers to keep their definitions.
        let variable_definitions = op
            .variables
            .iter()
            .filter(|def| canon.passed.contains_key(def.name.as_str()))
            .filter_map(|def| {
                let at = pos_of(def.location(), sources).unwrap_or_default();
                Some(Positioned::new(
                    VariableDefinition {
                        name: Positioned::new(Name::new(def.name.as_str()), at),
                        var_type: Positioned::new(Type::new(&def.ty.to_string())?, at),
                        directives: Vec::new(),
                        default_value: None,
                    },
                    at,
                ))
            })
            .collect();
        let operation = OperationDefinition {
            // A subscription runs as its `Query` twin (see `super::subscription`).
            ty: match ty {
                OperationType::Subscription => OperationType::Query,
                ty => ty,
            },
            variable_definitions,
            directives: Vec::new(),
            selection_set: root,
        };
        let document = ExecutableDocument {
            operations: DocumentOperations::Single(Positioned::new(
                operation,
                pos_of(op.location(), sources).unwrap_or_default(),
            )),
            fragments: Default::default(),
        };
        let reads_data = root_fields(&document)
            .any(|f| !matches!(f.name.node.as_str(), "__typename" | "__schema" | "__type"));
        let roots = root_fields(&document)
            .map(|f| {
                let fixed = !refers_to_variables(&f.selection_set.node);
                (f.response_key().node.clone(), fixed.then(OnceLock::new))
            })
            .collect();
        Ok(Canonical {
            op: entry.clone(),
            // A canonical field is a few hundred bytes (names, arguments, positions), and
            // about as much again in its root field's kept plan.
            weight: canon.fields.saturating_mul(512) + form.len(),
            form,
            ty,
            name: op.name.as_ref().map(|n| n.to_string()),
            document,
            shape: Arc::new(shape),
            reads_data,
            passed: canon.passed.into_keys().collect(),
            roots,
        })
    }
}

/// An argument of a canonical field: its name and value.
type Argument = (Positioned<Name>, Positioned<async_graphql_value::Value>);

/// The placeholder field of a selection set `@skip`/`@include` emptied, and its shape entry:
/// the object stays an object, and [`finish`] removes the key.
fn empty_placeholder(pos: Pos) -> (Positioned<GqlSelection>, (Name, OutType, Shape)) {
    let field = Field {
        alias: Some(Positioned::new(Name::new(EMPTY_SELECTION_KEY), pos)),
        name: Positioned::new(Name::new("__typename"), pos),
        arguments: Vec::new(),
        directives: Vec::new(),
        selection_set: Positioned::new(SelectionSet::default(), pos),
    };
    let item = Positioned::new(GqlSelection::Field(Positioned::new(field, pos)), pos);
    let shape = (
        Name::new(EMPTY_SELECTION_KEY),
        OutType::Named { non_null: true },
        Shape::default(),
    );
    (item, shape)
}

/// The canonical operation's root fields.
fn root_fields(doc: &ExecutableDocument) -> impl Iterator<Item = &Field> {
    let items = match &doc.operations {
        DocumentOperations::Single(op) => op.node.selection_set.node.items.as_slice(),
        DocumentOperations::Multiple(_) => &[],
    };
    items.iter().filter_map(|item| match &item.node {
        GqlSelection::Field(f) => Some(&f.node),
        _ => None,
    })
}

/// Whether an argument anywhere in a canonical selection set is (or holds) a variable.
fn refers_to_variables(set: &SelectionSet) -> bool {
    fn value(v: &async_graphql_value::Value) -> bool {
        use async_graphql_value::Value;
        match v {
            Value::Variable(_) => true,
            Value::List(items) => items.iter().any(value),
            Value::Object(fields) => fields.values().any(value),
            _ => false,
        }
    }
    set.items.iter().any(|item| match &item.node {
        GqlSelection::Field(f) => {
            f.node.arguments.iter().any(|(_, v)| value(&v.node))
                || refers_to_variables(&f.node.selection_set.node)
        }
        // A canonical selection set has no fragments; were there one, plan each time.
        _ => true,
    })
}

/// Counts a document's aliases and directives against the limits (all of its operations and
/// fragments, before anything is expanded).
fn count_document(doc: &ast::Document, limits: &DocumentLimits) -> Result<(), Refused> {
    fn walk(set: &[ast::Selection], aliases: &mut usize, directives: &mut usize) {
        for sel in set {
            match sel {
                ast::Selection::Field(f) => {
                    *aliases += usize::from(f.alias.is_some());
                    *directives += f.directives.len();
                    walk(&f.selection_set, aliases, directives);
                }
                ast::Selection::FragmentSpread(s) => *directives += s.directives.len(),
                ast::Selection::InlineFragment(i) => {
                    *directives += i.directives.len();
                    walk(&i.selection_set, aliases, directives);
                }
            }
        }
    }
    let (mut aliases, mut directives) = (0, 0);
    for def in &doc.definitions {
        match def {
            ast::Definition::OperationDefinition(op) => {
                directives += op.directives.len();
                walk(&op.selection_set, &mut aliases, &mut directives);
            }
            ast::Definition::FragmentDefinition(f) => {
                directives += f.directives.len();
                walk(&f.selection_set, &mut aliases, &mut directives);
            }
            _ => {}
        }
    }
    let over = |what: &str, n: usize, max: usize| {
        Refused(vec![request_error(
            format!("the document has {n} {what}, more than the {max} allowed"),
            None,
            "LIMIT_EXCEEDED",
        )])
    };
    if aliases > limits.max_aliases {
        return Err(over("aliases", aliases, limits.max_aliases));
    }
    if directives > limits.max_directives {
        return Err(over("directives", directives, limits.max_directives));
    }
    Ok(())
}

fn diagnostics(list: &apollo_compiler::validation::DiagnosticList, code: &str) -> Vec<ServerError> {
    list.iter()
        .map(|d| {
            let json = d.to_json();
            let pos = json.locations.first().map(|lc| Pos {
                line: lc.line,
                column: lc.column,
            });
            let mut err = request_error(json.message, pos, code);
            err.locations = json
                .locations
                .iter()
                .map(|lc| Pos {
                    line: lc.line,
                    column: lc.column,
                })
                .collect();
            err
        })
        .collect()
}

/// The state of one canonicalisation.
struct Canon<'a> {
    schema: &'a Valid<apollo_compiler::Schema>,
    doc: &'a Valid<executable::ExecutableDocument>,
    vars: &'a Valid<JsonMap>,
    fields: usize,
    limits: DocumentLimits,
    /// Variables the canonical document refers to, with their coerced values.
    passed: IndexMap<Name, Value>,
}

/// Where a selection set sits: the nesting level of its fields, and whether it is inside
/// introspection.
#[derive(Copy, Clone)]
struct Level {
    depth: usize,
    introspection: bool,
}

impl Level {
    fn root() -> Level {
        Level {
            depth: 1,
            introspection: false,
        }
    }
}

impl<'a> Canon<'a> {
    /// `CollectFields` over `sets` for objects of `object_type`, merged by response key, then
    /// the same for each field's merged sub-selection.
    fn selection_set(
        &mut self,
        object_type: &str,
        sets: &[&'a executable::SelectionSet],
        level: Level,
    ) -> Result<(Positioned<SelectionSet>, Shape), ServerError> {
        let mut grouped: IndexMap<
            &'a apollo_compiler::Name,
            Vec<&'a apollo_compiler::Node<executable::Field>>,
        > = IndexMap::new();
        let mut visited = HashSet::new();
        let mut pos = None;
        for set in sets {
            self.collect(object_type, &set.selections, &mut visited, &mut grouped);
        }
        let mut items = Vec::with_capacity(grouped.len());
        let mut shape = Vec::with_capacity(grouped.len());
        for (key, same) in grouped {
            let first = same[0];
            let field_pos = pos_of(first.location(), &self.doc.sources).unwrap_or_default();
            let introspection =
                level.introspection || matches!(first.name.as_str(), "__schema" | "__type");
            self.count_field(level.depth, introspection, field_pos)?;
            pos.get_or_insert(field_pos);
            let inner = first.selection_set.ty.as_str();
            let has_selection = !first.selection_set.selections.is_empty();
            let (selection_set, sub) = if has_selection {
                let subs: Vec<&'a executable::SelectionSet> =
                    same.iter().map(|f| &f.selection_set).collect();
                let below = Level {
                    depth: level.depth + 1,
                    introspection,
                };
                self.selection_set(inner, &subs, below)?
            } else {
                (
                    Positioned::new(SelectionSet::default(), field_pos),
                    Shape::default(),
                )
            };
            let ty = if object_type == "__Schema" && first.name == "description" {
                OutType::SchemaDescription
            } else {
                OutType::of(&first.definition.ty)
            };
            shape.push((Name::new(key.as_str()), ty, sub));
            let arguments = self.arguments(first, field_pos)?;
            let field = Field {
                alias: first
                    .alias
                    .as_ref()
                    .map(|_| Positioned::new(Name::new(key.as_str()), field_pos)),
                name: Positioned::new(Name::new(first.name.as_str()), field_pos),
                arguments,
                directives: Vec::new(),
                selection_set,
            };
            items.push(Positioned::new(
                GqlSelection::Field(Positioned::new(field, field_pos)),
                field_pos,
            ));
        }
        let pos = pos.unwrap_or_default();
        if items.is_empty() {
            // Everything was skipped: keep the object an object.
            let (item, placeholder) = empty_placeholder(pos);
            items.push(item);
            shape.push(placeholder);
        }
        Ok((Positioned::new(SelectionSet { items }, pos), Shape(shape)))
    }

    /// Counts one more field of the canonical operation, and checks its depth (`level_depth`,
    /// within introspection or not) against the limits.
    fn count_field(
        &mut self,
        level_depth: usize,
        introspection: bool,
        at: Pos,
    ) -> Result<(), ServerError> {
        self.fields += 1;
        if self.fields > self.limits.max_fields {
            return Err(request_error(
                format!(
                    "the operation has more than {} fields once its fragments are expanded",
                    self.limits.max_fields
                ),
                None,
                "LIMIT_EXCEEDED",
            ));
        }
        if self.fields > self.limits.max_complexity {
            return Err(request_error(
                format!(
                    "the operation is too complex: its complexity (one point per selected \
                     field) is over {}",
                    self.limits.max_complexity
                ),
                None,
                "LIMIT_EXCEEDED",
            ));
        }
        let (limit, what) = if introspection {
            (self.limits.max_introspection_depth, "introspection")
        } else {
            (self.limits.max_depth, "the selection")
        };
        if level_depth > limit {
            return Err(request_error(
                format!("the query is nested too deep: {what} may nest at most {limit} fields"),
                Some(at),
                "LIMIT_EXCEEDED",
            ));
        }
        Ok(())
    }

    /// A canonical field's arguments: literals checked and written with the coerced
    /// variables' values; a whole argument that is a variable stays that variable (its value
    /// is handed to the executor once: bulk input is not copied again); one whose variable
    /// was not given is left out, so the argument's default applies.
    fn arguments(
        &mut self,
        field: &executable::Field,
        field_pos: Pos,
    ) -> Result<Vec<Argument>, ServerError> {
        let mut arguments = Vec::with_capacity(field.arguments.len());
        for arg in &field.arguments {
            let at = pos_of(arg.location(), &self.doc.sources).unwrap_or(field_pos);
            if let Some(def) = field.definition.argument_by_name(&arg.name) {
                self.check_literal(&def.ty, &arg.value)
                    .map_err(|m| request_error(m, Some(at), "GRAPHQL_VALIDATION_FAILED"))?;
            }
            let value = match arg.value.as_ref() {
                ast::Value::Variable(var) => {
                    let Some(v) = self.vars.get(var.as_str()) else {
                        continue;
                    };
                    let name = Name::new(var.as_str());
                    if !self.passed.contains_key(&name) {
                        self.passed.insert(name.clone(), json(v));
                    }
                    async_graphql_value::Value::Variable(name)
                }
                other => match self.value(other) {
                    Some(value) => value.into_value(),
                    None => continue,
                },
            };
            arguments.push((
                Positioned::new(Name::new(arg.name.as_str()), at),
                Positioned::new(value, at),
            ));
        }
        Ok(arguments)
    }

    /// The specification's `CollectFields`.
    fn collect(
        &self,
        object_type: &str,
        selections: &'a [Selection],
        visited: &mut HashSet<&'a apollo_compiler::Name>,
        grouped: &mut IndexMap<
            &'a apollo_compiler::Name,
            Vec<&'a apollo_compiler::Node<executable::Field>>,
        >,
    ) {
        for selection in selections {
            if !self.included(selection.directives()) {
                continue;
            }
            match selection {
                Selection::Field(field) => {
                    grouped.entry(field.response_key()).or_default().push(field)
                }
                Selection::FragmentSpread(spread) => {
                    if !visited.insert(&spread.fragment_name) {
                        continue;
                    }
                    let Some(fragment) = self.doc.fragments.get(&spread.fragment_name) else {
                        continue;
                    };
                    if self.applies(object_type, fragment.type_condition()) {
                        self.collect(
                            object_type,
                            &fragment.selection_set.selections,
                            visited,
                            grouped,
                        );
                    }
                }
                Selection::InlineFragment(inline) => {
                    if inline
                        .type_condition
                        .as_ref()
                        .is_none_or(|c| self.applies(object_type, c))
                    {
                        self.collect(
                            object_type,
                            &inline.selection_set.selections,
                            visited,
                            grouped,
                        );
                    }
                }
            }
        }
    }

    /// The specification's `DoesFragmentTypeApply`.
    fn applies(&self, object_type: &str, condition: &str) -> bool {
        match self.schema.types.get(condition) {
            Some(ExtendedType::Object(_)) => condition == object_type,
            Some(ExtendedType::Interface(_)) => match self.schema.types.get(object_type) {
                Some(ExtendedType::Object(o)) => o.implements_interfaces.contains(condition),
                _ => false,
            },
            Some(ExtendedType::Union(u)) => u.members.contains(object_type),
            _ => false,
        }
    }

    /// `@skip(if:)` and `@include(if:)`, with literals or coerced variables.
    fn included(&self, directives: &executable::DirectiveList) -> bool {
        let cond = |name: &str| {
            directives
                .get(name)
                .and_then(|d| d.specified_argument_by_name("if"))
                .and_then(|v| match v.as_ref() {
                    ast::Value::Boolean(b) => Some(*b),
                    ast::Value::Variable(var) => self.vars.get(var.as_str())?.as_bool(),
                    _ => None,
                })
        };
        cond("skip") != Some(true) && cond("include") != Some(false)
    }

    /// Checks the custom-scalar values written literally in an argument (variables were
    /// checked with the variable values).
    fn check_literal(&self, ty: &ast::Type, v: &ast::Value) -> Result<(), String> {
        match v {
            ast::Value::Variable(_) | ast::Value::Null => Ok(()),
            ast::Value::List(items) if ty.is_list() => items
                .iter()
                .try_for_each(|item| self.check_literal(ty.item_type(), item)),
            ast::Value::Object(fields) => {
                let Some(ExtendedType::InputObject(def)) =
                    self.schema.types.get(ty.inner_named_type())
                else {
                    return Ok(());
                };
                fields
                    .iter()
                    .try_for_each(|(k, v)| match def.fields.get(k) {
                        Some(f) => self.check_literal(&f.ty, v),
                        None => Ok(()),
                    })
            }
            _ if ty.is_list() => self.check_literal(ty.item_type(), v),
            _ => match self.value(v) {
                Some(value) => check_scalars(self.schema, ty, &value),
                None => Ok(()),
            },
        }
    }

    /// An argument value with variables replaced by their coerced values. `None`: a variable
    /// that was not provided, so the argument (or input field) counts as not given.
    fn value(&self, v: &ast::Value) -> Option<Value> {
        Some(match v {
            ast::Value::Null => Value::Null,
            ast::Value::Enum(name) => Value::Enum(Name::new(name.as_str())),
            ast::Value::Variable(name) => json(self.vars.get(name.as_str())?),
            ast::Value::String(s) => Value::String(s.clone()),
            ast::Value::Boolean(b) => Value::Boolean(*b),
            ast::Value::Int(i) => match i.as_str().parse::<i64>() {
                Ok(n) => Value::Number(n.into()),
                Err(_) => number(i.try_to_f64().ok()?),
            },
            ast::Value::Float(f) => number(f.try_to_f64().ok()?),
            // A list item whose variable is missing is null.
            ast::Value::List(items) => Value::List(
                items
                    .iter()
                    .map(|item| self.value(item).unwrap_or(Value::Null))
                    .collect(),
            ),
            ast::Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .filter_map(|(k, v)| Some((Name::new(k.as_str()), self.value(v)?)))
                    .collect(),
            ),
        })
    }
}

/// An input value as [`check_scalars`] walks it: async-graphql's (literals) or JSON
/// (variables), so that a large variable is checked where it is, without a copy.
trait InputTree {
    fn is_null(&self) -> bool;
    fn items(&self) -> Option<Vec<&Self>>;
    fn entries(&self) -> Option<Vec<(&str, &Self)>>;
    /// The value as async-graphql's, for a scalar's own parser (leaves only: small).
    fn leaf(&self) -> Value;
}

impl InputTree for Value {
    fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    fn items(&self) -> Option<Vec<&Self>> {
        match self {
            Value::List(items) => Some(items.iter().collect()),
            _ => None,
        }
    }
    fn entries(&self) -> Option<Vec<(&str, &Self)>> {
        match self {
            Value::Object(m) => Some(m.iter().map(|(k, v)| (k.as_str(), v)).collect()),
            _ => None,
        }
    }
    fn leaf(&self) -> Value {
        self.clone()
    }
}

impl InputTree for JsonValue {
    fn is_null(&self) -> bool {
        matches!(self, JsonValue::Null)
    }
    fn items(&self) -> Option<Vec<&Self>> {
        match self {
            JsonValue::Array(items) => Some(items.iter().collect()),
            _ => None,
        }
    }
    fn entries(&self) -> Option<Vec<(&str, &Self)>> {
        match self {
            JsonValue::Object(m) => Some(m.iter().map(|(k, v)| (k.as_str(), v)).collect()),
            _ => None,
        }
    }
    fn leaf(&self) -> Value {
        json(self)
    }
}

/// Checks every custom-scalar value inside `v` (of type `ty`) with the scalar's own parser.
fn check_scalars<V: InputTree>(
    schema: &apollo_compiler::Schema,
    ty: &ast::Type,
    v: &V,
) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    if ty.is_list() {
        return match v.items() {
            Some(items) => items
                .into_iter()
                .try_for_each(|item| check_scalars(schema, ty.item_type(), item)),
            None => check_scalars(schema, ty.item_type(), v),
        };
    }
    match schema.types.get(ty.inner_named_type()) {
        Some(ExtendedType::Scalar(def)) if !def.is_built_in() => {
            match super::scalars::check_input(def.name.as_str(), &v.leaf()) {
                Some(result) => result,
                None => Ok(()),
            }
        }
        Some(ExtendedType::InputObject(def)) => match v.entries() {
            Some(entries) => entries
                .into_iter()
                .try_for_each(|(k, fv)| match def.fields.get(k) {
                    Some(f) => check_scalars(schema, &f.ty, fv),
                    None => Ok(()),
                }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn json(v: &JsonValue) -> Value {
    match v {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Boolean(*b),
        JsonValue::Number(n) => Value::Number(n.clone()),
        JsonValue::String(s) => Value::String(s.as_str().to_owned()),
        JsonValue::Array(items) => Value::List(items.iter().map(json).collect()),
        JsonValue::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (Name::new(k.as_str()), json(v)))
                .collect(),
        ),
    }
}

/// Converts request variables (JSON) into the form [`Preparer::prepare`] takes.
pub fn variables(vars: serde_json::Map<String, serde_json::Value>) -> JsonMap {
    vars.into_iter()
        .map(|(k, v)| (k.into(), JsonValue::from(v)))
        .collect()
}

/// Completes the executor's `data` as the specification's `CompleteValue` would: every
/// object's keys in the order of the canonical selection set that produced it, without the
/// [`EMPTY_SELECTION_KEY`] placeholders, and a `null` in a non-null position (a field that
/// failed) propagated to the nearest nullable parent, up to `data` itself. (Values the
/// output path rendered are complete JSON text already.)
pub fn finish(data: &mut Value, shape: &Shape) {
    // The executor answers `null` for a root whose every field failed: start from an
    // object whose fields are all missing, and let their types decide.
    if matches!(data, Value::Null) {
        *data = Value::Object(IndexMap::new());
    }
    if complete_object(data, shape).is_err() {
        *data = Value::Null;
    }
}

/// A `null` that must propagate to the parent.
struct NullInNonNull;

fn complete_object(value: &mut Value, shape: &Shape) -> Result<(), NullInNonNull> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    let mut sorted = IndexMap::with_capacity(map.len());
    let mut null = false;
    for (key, ty, sub) in &shape.0 {
        let (k, mut v) = map
            .shift_remove_entry(key)
            .unwrap_or_else(|| (key.clone(), Value::Null));
        if complete(&mut v, ty, sub).is_err() {
            null = true;
        }
        if k.as_str() != EMPTY_SELECTION_KEY {
            sorted.insert(k, v);
        }
    }
    *map = sorted;
    if null { Err(NullInNonNull) } else { Ok(()) }
}

fn complete(value: &mut Value, ty: &OutType, shape: &Shape) -> Result<(), NullInNonNull> {
    if let OutType::SchemaDescription = ty {
        *value = Value::Null;
        return Ok(());
    }
    let ok = match (&mut *value, ty) {
        (Value::Null, _) => false,
        (Value::List(items), OutType::List { item, .. }) => {
            let mut ok = true;
            for v in items.iter_mut() {
                ok &= complete(v, item, shape).is_ok();
            }
            ok
        }
        (Value::Object(_), _) => complete_object(value, shape).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        *value = Value::Null;
        if ty.non_null() {
            Err(NullInNonNull)
        } else {
            Ok(())
        }
    }
}
