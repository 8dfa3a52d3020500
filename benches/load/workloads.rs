//! The workloads: their queries, seed sizes and request bodies.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    Dashboard,
    DashboardCounts,
    Deep,
    Detail,
    DetailVars,
    Typename,
    TopCustomers,
    ManyToMany,
    FanOut,
    MyOrders,
    Reports,
    CreateOrder,
    SignUps,
    ImportProducts,
}

impl Workload {
    pub(crate) const ALL: [Workload; 14] = [
        Workload::Dashboard,
        Workload::DashboardCounts,
        Workload::Deep,
        Workload::Detail,
        Workload::DetailVars,
        Workload::Typename,
        Workload::TopCustomers,
        Workload::ManyToMany,
        Workload::FanOut,
        Workload::MyOrders,
        Workload::Reports,
        Workload::CreateOrder,
        Workload::SignUps,
        Workload::ImportProducts,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Dashboard => "dashboard",
            Workload::DashboardCounts => "dashboard-counts",
            Workload::Deep => "deep",
            Workload::Detail => "detail",
            Workload::DetailVars => "detail-vars",
            Workload::Typename => "typename",
            Workload::TopCustomers => "top-customers",
            Workload::ManyToMany => "many-to-many",
            Workload::FanOut => "fan-out",
            Workload::MyOrders => "my-orders",
            Workload::Reports => "reports",
            Workload::CreateOrder => "create-order",
            Workload::SignUps => "sign-ups",
            Workload::ImportProducts => "import-products",
        }
    }

    pub(crate) fn is_read(self) -> bool {
        !matches!(
            self,
            Workload::CreateOrder | Workload::SignUps | Workload::ImportProducts
        )
    }

    pub(crate) fn parse_list(names: &[String]) -> Res<Vec<Workload>> {
        let mut out = Vec::new();
        for raw in names {
            let key: String = raw
                .trim()
                .to_ascii_lowercase()
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .collect();
            let found: Vec<Workload> = match key.as_str() {
                "" => continue,
                "all" => Workload::ALL.to_vec(),
                "reads" | "read" => Workload::ALL.into_iter().filter(|w| w.is_read()).collect(),
                "writes" | "write" => Workload::ALL.into_iter().filter(|w| !w.is_read()).collect(),
                "m2m" | "manytomany" => vec![Workload::ManyToMany],
                "topcustomers" | "top" => vec![Workload::TopCustomers],
                _ => Workload::ALL
                    .into_iter()
                    .filter(|w| w.name().replace('-', "") == key)
                    .collect(),
            };
            if found.is_empty() {
                let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                return Err(format!(
                    "unknown workload {raw:?}; known: {}, reads, writes, all",
                    names.join(", ")
                )
                .into());
            }
            for w in found {
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        // Reads first (writes change the data), in the canonical order.
        Ok(Workload::ALL
            .into_iter()
            .filter(|w| out.contains(w))
            .collect())
    }
}

pub(crate) const BASE: SeedSize = SeedSize {
    users: 1000,
    orders_per_user: 10,
    items_per_order: 3,
    products: 500,
};

pub(crate) const BIG: SeedSize = SeedSize {
    users: 500_000,
    orders_per_user: 10,
    items_per_order: 1,
    products: 1000,
};

pub(crate) fn dashboard_query(users: u64) -> String {
    format!("{{ users(first: {users}) {{ id username orders {{ id totalAmount }} }} }}")
}

pub(crate) fn deep_query(users: u64) -> String {
    format!(
        "{{ users(first: {users}) {{ id orders {{ id status totalAmount items {{ quantity unitPrice \
         product {{ name sku price }} }} }} }} }}"
    )
}

pub(crate) const TOP_CUSTOMERS: &str = "{ analytics { topCustomers(days: 30, limit: 10) { user { id email } orderCount totalRevenue } } }";
/// Each of 100 users' 5 newest completed orders, with the count: a per-parent page that the
/// index `orders (user_id, status, created_at desc)` serves (--big).
pub(crate) const RECENT_COMPLETED: &str = "{ users(first: 100) { ordersConnection(first: 5, orderBy: CREATED_AT_DESC, where: { status: { eq: COMPLETED } }) { totalCount edges { node { id totalAmount } } } } }";
pub(crate) const MANY_TO_MANY: &str =
    "{ products(first: 50) { id name orders { id user { email } } } }";
/// A large accepted request: a many-to-many round trip whose tree multiplies its rows (about
/// 30,000 rows and 3 MB on the default data set, under the default row and byte budgets).
pub(crate) const FAN_OUT: &str =
    "{ products(first: 20) { orders { products { orders { id } } } } }";

/// 25 aliases of the spending summary, 1,000 rows each with the user: 25 statements, 25,000
/// rows and about 2.9 MB of answer, within every limit (the heaviest accepted request mix
/// for memory).
pub(crate) fn reports_query() -> String {
    let aliases: Vec<String> = (0..25)
        .map(|i| {
            format!(
                "a{i}: spendingSummary(first: 1000) {{ orderCount totalRevenue \
                 user {{ id email username }} }}"
            )
        })
        .collect();
    format!("{{ analytics {{ {} }} }}", aliases.join(" "))
}

/// The lesson's puzzle as it is meant: each user's order count, without loading the orders.
pub(crate) const DASHBOARD_COUNTS: &str =
    "{ users(first: 1000) { id username ordersAggregate { count } } }";

/// A customer's "my recent orders with items" (run with a customer's token: user 2 of the
/// demo accounts), with the permission predicates inside its statements.
pub(crate) const MY_ORDERS: &str = "{ me { username orders(first: 10) { id status totalAmount createdAt \
                         items { quantity unitPrice product { name } } } } }";

/// The single-order detail as clients send it: one document, the id in a variable.
pub(crate) const DETAIL_VARS: &str = "query W3($id: ID!) { order(id: $id) { id user { email } items { \
                           quantity unitPrice product { name } } } }";

pub(crate) fn fixed(query: &str) -> BodyFn {
    let body = query_body(query);
    Arc::new(move |_| body.clone())
}

/// The request body of a read workload on a data set of `size`.
pub(crate) fn read_body(w: Workload, size: &SeedSize) -> BodyFn {
    match w {
        Workload::Dashboard => fixed(&dashboard_query(1000)),
        Workload::DashboardCounts => fixed(DASHBOARD_COUNTS),
        Workload::Deep => fixed(&deep_query(100)),
        Workload::TopCustomers => fixed(TOP_CUSTOMERS),
        Workload::ManyToMany => fixed(MANY_TO_MANY),
        Workload::FanOut => fixed(FAN_OUT),
        Workload::Reports => fixed(&reports_query()),
        Workload::MyOrders => fixed(MY_ORDERS),
        Workload::Typename => fixed("{ __typename }"),
        Workload::DetailVars => {
            let orders = size.orders().max(1);
            Arc::new(move |i| {
                let id = 1 + (i.wrapping_mul(7919) % orders);
                query_body_with(DETAIL_VARS, json!({ "id": id.to_string() }))
            })
        }
        Workload::Detail | Workload::CreateOrder | Workload::SignUps | Workload::ImportProducts => {
            let orders = size.orders().max(1);
            Arc::new(move |i| {
                let id = 1 + (i.wrapping_mul(7919) % orders);
                query_body(&format!(
                    "{{ order(id: \"{id}\") {{ id user {{ email }} items {{ quantity unitPrice \
                     product {{ name }} }} }} }}"
                ))
            })
        }
    }
}
