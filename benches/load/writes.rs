//! The write workloads: orders, sign-ups and the bulk product import.

use super::*;

/// The mutation fields the schema has.
pub(crate) async fn mutation_fields(addr: std::net::SocketAddr) -> Res<Vec<Value>> {
    let mut conn = Conn::connect(addr).await?;
    let q = "{ __schema { mutationType { fields { name args { name type { kind name ofType \
             { kind name ofType { kind name ofType { kind name } } } } } } } } }";
    let reply = conn.graphql(query_body(q), false).await?;
    let json = check_graphql(&reply)?;
    Ok(json
        .pointer("/data/__schema/mutationType/fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// A GraphQL type reference (`[ProductInput!]!`) from introspection.
pub(crate) fn type_ref(t: &Value) -> Option<String> {
    let kind = t.get("kind")?.as_str()?;
    match kind {
        "NON_NULL" => Some(format!("{}!", type_ref(t.get("ofType")?)?)),
        "LIST" => Some(format!("[{}]", type_ref(t.get("ofType")?)?)),
        _ => Some(t.get("name")?.as_str()?.to_owned()),
    }
}

pub(crate) fn field<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
}

pub(crate) async fn create_order_workload(env: &Env, plan: Plan) -> Res<Row> {
    let server = env.server()?;
    let users = env.size.users.max(1);
    let products = env.size.products.max(3);
    // Three distinct products per order, walking the catalogue so that each product's stock
    // (1,000 or more) lasts: 3 units per request spread over all products.
    let body: BodyFn = Arc::new(move |i| {
        let user = 1 + (i.wrapping_mul(7919) % users);
        let p: Vec<u64> = (0..3)
            .map(|k| 1 + (i.wrapping_mul(3).wrapping_add(k) % products))
            .collect();
        query_body(&format!(
            "mutation {{ createOrder(input: {{ userId: \"{user}\", items: [\
             {{ productId: \"{}\", quantity: 1 }}, {{ productId: \"{}\", quantity: 1 }}, \
             {{ productId: \"{}\", quantity: 1 }}] }}) {{ id totalAmount }} }}",
            p[0], p[1], p[2]
        ))
    });
    let mut conn = Conn::connect(server.addr).await?;
    check_graphql(&conn.graphql(body(u64::MAX / 2), false).await?)?;
    drop(conn);
    load_server(env, "create-order", plan, body).await
}

/// 1,000 sign-ups (`createUser`, so 1,000 argon2id hashes) sent by `clients` connections:
/// their rate and latency, the server's peak RSS during them, and its RSS once they are done
/// (hashing memory must be bounded and must not stay behind).
pub(crate) async fn sign_up_workload(env: &Env, clients: usize) -> Res<Row> {
    const N: u64 = 1000;
    let server = env.server()?;
    let addr = server.addr;
    let reset = server.reset_peak();
    let before = server.rss_kib();
    progress(&format!(
        "{} sign-ups: {N} createUser calls from {clients} clients",
        env.backend.name()
    ));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let mut conn = Conn::connect(addr).await?;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= N {
                    return Ok::<_, BoxError>(ms);
                }
                let body = query_body(&format!(
                    "mutation {{ createUser(input: {{ email: \"bench-signup-{i}@example.com\", \
                     username: \"bench_signup_{i}\", password: \"correct horse battery\" }}) {{ id }} }}"
                ));
                let t = Instant::now();
                let reply = conn.graphql(body, false).await?;
                check_graphql(&reply)?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut ms = Vec::new();
    for t in tasks {
        ms.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p / 100.0).round() as usize];
    let after = server.rss_kib();
    let mib = |k: Option<u64>| k.map_or("?".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0));
    Ok(Row {
        workload: "sign-ups".to_owned(),
        clients,
        requests: ms.len() as u64,
        requests_per_sec: ms.len() as f64 / secs,
        p50_ms: pct(50.0),
        p99_ms: pct(99.0),
        statements_per_request: f64::NAN,
        response_bytes: f64::NAN,
        peak_rss_mib: server.peak_rss_kib().map(|k| k as f64 / 1024.0),
        note: Some(format!(
            "RSS {} MiB before, {} MiB after the {N} sign-ups{}",
            mib(before),
            mib(after),
            if reset { "" } else { " (peak since start)" }
        )),
        ..Row::default()
    })
}

/// Imports of 10,000 products, one at a time: even runs a new set of SKUs (inserts), odd runs
/// the previous set again (updates).
pub(crate) async fn import_workload(env: &Env, opts: &Opts, field_def: &Value) -> Res<Vec<Row>> {
    const N: usize = 10_000;
    let server = env.server()?;
    let args = field_def
        .get("args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let arg = args
        .iter()
        .find(|a| a.get("name").and_then(Value::as_str) == Some("products"))
        .or_else(|| args.first())
        .ok_or("importProducts has no arguments")?;
    let arg_name = arg
        .get("name")
        .and_then(Value::as_str)
        .ok_or("argument without a name")?;
    let arg_type = arg
        .get("type")
        .and_then(type_ref)
        .ok_or("cannot read the argument's type")?;
    let query = format!(
        "mutation Import($products: {arg_type}) {{ importProducts({arg_name}: $products) {{ inserted updated }} }}"
    );
    let mut rows = Vec::new();
    let mut conn = Conn::connect(server.addr).await?;
    for run in 0..opts.import_runs.max(1) {
        let set = run / 2;
        let products: Vec<Value> = (0..N)
            .map(|j| {
                json!({
                    "name": format!("Bench product {set}-{j}"),
                    "sku": format!("BENCH-{set}-{j:05}"),
                    "price": "12.50",
                    "stockQuantity": 100 + (j % 50),
                })
            })
            .collect();
        let body: Bytes = query_body_with(&query, json!({ "products": products }));
        let body_len = body.len();
        let reset = server.reset_peak();
        let started = Instant::now();
        let reply = conn.graphql(body, false).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut row = Row {
            workload: format!("import #{}", run + 1),
            clients: 1,
            requests: 1,
            p50_ms: ms,
            p99_ms: ms,
            requests_per_sec: 1000.0 / ms,
            statements_per_request: reply.statements.unwrap_or(0) as f64,
            statements_min: reply.statements.unwrap_or(0),
            statements_max: reply.statements.unwrap_or(0),
            response_bytes: reply.body.len() as f64,
            peak_rss_mib: server.peak_rss_kib().map(|k| k as f64 / 1024.0),
            ..Row::default()
        };
        match check_graphql(&reply) {
            Ok(json) => {
                let r = json.pointer("/data/importProducts");
                let get = |k: &str| {
                    r.and_then(|r| r.get(k))
                        .and_then(Value::as_i64)
                        .unwrap_or(-1)
                };
                row.note = Some(format!(
                    "{} products ({} KiB request): {} inserted, {} updated{}",
                    thousands(N as u64),
                    body_len / 1024,
                    get("inserted"),
                    get("updated"),
                    if reset { "" } else { "; peak RSS since start" }
                ));
            }
            Err(e) => {
                row.requests = 0;
                row.errors = 1;
                row.note = Some(e.to_string());
            }
        }
        progress(&format!(
            "{} import #{}: {ms:.0} ms",
            env.backend.name(),
            run + 1
        ));
        rows.push(row);
    }
    Ok(rows)
}
