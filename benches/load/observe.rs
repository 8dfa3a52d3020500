//! `--observability`: what logging and metrics cost, measured side by side.

use super::*;

/// `--observability`: each read workload on a quiet server and on one logging and keeping
/// metrics as in production, in alternating rounds on the same data; prints both rates and
/// the cost.
pub(crate) async fn observability(
    env: &Env,
    opts: &Opts,
    workloads: &[Workload],
    out: &mut Out,
) -> Res<()> {
    let db = env.db.as_ref().ok_or("no database")?;
    let bin = env.bin.clone();
    let max_page_size = 1000;
    let quiet = Server::start(
        &bin,
        db,
        &ServerConfig {
            pool_size: opts.pool_size,
            max_page_size,
            env: vec![
                ("EAGERQL_LOG", "off".into()),
                ("EAGERQL_METRICS", "false".into()),
            ],
        },
    )
    .await?;
    let observed = Server::start(
        &bin,
        db,
        &ServerConfig {
            pool_size: opts.pool_size,
            max_page_size,
            env: observed_env(),
        },
    )
    .await?;
    // A scraper, as Prometheus would: /metrics every second.
    let scrape_addr = observed.addr;
    let scraper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(mut conn) = Conn::connect(scrape_addr).await {
                let _ = conn
                    .send(hyper::Method::GET, "/metrics", Bytes::new(), false)
                    .await;
            }
        }
    });
    let rounds = opts.rounds.max(1);
    let plan = Plan {
        clients: opts.clients.max(1),
        warmup: Duration::from_secs_f64((opts.warmup / rounds as f64).max(0.2)),
        duration: Duration::from_secs_f64((opts.duration / rounds as f64).max(0.5)),
    };
    let mut text = format!(
        "\n== {}: logging and metrics cost; {} clients, {} rounds of {:.1} s per server ==\n\
         {:<16} {:>12} {:>12} {:>8} {:>10} {:>10} {:>8}   rounds (quiet / observed req/s)\n",
        env.backend.name(),
        plan.clients,
        rounds,
        plan.duration.as_secs_f64(),
        "workload",
        "quiet req/s",
        "observed",
        "cost",
        "cpu us/req",
        "observed",
        "cost"
    );
    for &w in workloads.iter().filter(|w| w.is_read()) {
        client::as_customer(w == Workload::MyOrders);
        let body = read_body(w, &env.size);
        let (mut q, mut o) = (Vec::new(), Vec::new());
        // Server CPU time and requests served, per server.
        let (mut cpu_q, mut cpu_o) = ((Duration::ZERO, 0u64), (Duration::ZERO, 0u64));
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [(&quiet, true), (&observed, false)]
            } else {
                [(&observed, false), (&quiet, true)]
            };
            for (server, is_quiet) in order {
                let before = server.cpu_time();
                let stats = client::run_http(server.addr, plan, body.clone()).await?;
                if let (Some(b), Some(a)) = (before, server.cpu_time()) {
                    let cpu = if is_quiet { &mut cpu_q } else { &mut cpu_o };
                    // The warm-up's requests are not counted: its CPU share is taken out.
                    let measured =
                        plan.duration.as_secs_f64() / (plan.duration + plan.warmup).as_secs_f64();
                    cpu.0 += (a - b).mul_f64(measured);
                    cpu.1 += stats.ok;
                }
                if stats.errors > 0 {
                    out.fail(format!(
                        "{} {}: {} errors",
                        env.backend.name(),
                        w.name(),
                        stats.errors
                    ));
                }
                if is_quiet {
                    q.push(stats.rps())
                } else {
                    o.push(stats.rps())
                }
            }
        }
        client::as_customer(false);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mq, mo) = (mean(&q), mean(&o));
        let cost = if mq > 0.0 {
            (1.0 - mo / mq) * 100.0
        } else {
            f64::NAN
        };
        let per_req = |(cpu, n): (Duration, u64)| {
            if n > 0 {
                cpu.as_secs_f64() * 1e6 / n as f64
            } else {
                f64::NAN
            }
        };
        let (uq, uo) = (per_req(cpu_q), per_req(cpu_o));
        let per_round: Vec<String> = q
            .iter()
            .zip(&o)
            .map(|(a, b)| format!("{a:.0}/{b:.0}"))
            .collect();
        progress(&format!(
            "{} {}: quiet {mq:.0}, observed {mo:.0} req/s",
            env.backend.name(),
            w.name()
        ));
        text.push_str(&format!(
            "{:<16} {:>12.0} {:>12.0} {:>7.1}% {:>10.0} {:>10.0} {:>7.1}%   {}\n",
            w.name(),
            mq,
            mo,
            cost,
            uq,
            uo,
            (uo / uq - 1.0) * 100.0,
            per_round.join(" ")
        ));
    }
    scraper.abort();
    drop(quiet);
    drop(observed);
    out.print(&text);
    Ok(())
}

/// The observed server's settings: as in production, or `BENCH_OBSERVED_ENV`
/// (`K=V,K=V`, e.g. the quiet server's own for an A/A run that shows the method's noise).
pub(crate) fn observed_env() -> Vec<(&'static str, String)> {
    const NAMES: [&str; 4] = [
        "EAGERQL_LOG",
        "EAGERQL_LOG_FORMAT",
        "EAGERQL_METRICS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ];
    match std::env::var("BENCH_OBSERVED_ENV") {
        Ok(spec) if !spec.is_empty() => spec
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                let name = NAMES.iter().find(|n| **n == k.trim())?;
                Some((*name, v.trim().to_owned()))
            })
            .collect(),
        _ => vec![
            ("EAGERQL_LOG", "info".into()),
            ("EAGERQL_LOG_FORMAT", "json".into()),
            ("EAGERQL_METRICS", "true".into()),
        ],
    }
}
