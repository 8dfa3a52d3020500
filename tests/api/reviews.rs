//! An entity added by the recipe: a migration per dialect and one description entry.

use eagerql::db::session::Arg;
use serde_json::json;

use crate::helpers::{exec, scalar_i64, spawn_app};

#[tokio::test]
async fn an_entity_added_by_its_description_is_queried_planned_and_guarded() {
    let app = spawn_app().await;
    app.seed(3, 4, 2, 4).await;
    exec(&app, "delete from reviews", vec![]).await;
    for (product, rating) in [(1, 5), (1, 3), (2, 4), (3, 1)] {
        exec(
            &app,
            "insert into reviews (product_id, user_id, rating, body) values ($1, 1, $2, 'ok')",
            vec![Arg::I64(product), Arg::I64(rating)],
        )
        .await;
    }
    // A to-many edge with a filter argument and an aggregate: one statement each.
    let r = app
        .gql("{ products(first: 3) { id reviews(minRating: 3) { rating product { id } } reviewsAggregate { count avg { rating } } } }")
        .await;
    let products = r.data()["products"].as_array().expect("list").clone();
    assert_eq!(
        products[0]["reviews"],
        json!([{ "rating": 5, "product": { "id": "1" } }, { "rating": 3, "product": { "id": "1" } }])
    );
    assert_eq!(
        products[0]["reviewsAggregate"],
        json!({ "count": 2, "avg": { "rating": 4 } })
    );
    assert_eq!(products[2]["reviews"], json!([]));
    assert_eq!(r.statements, 3, "{}", r.body);
    let four = scalar_i64(&app, "select id from reviews where rating = 4").await;
    // The generated roots, anonymous: the list with its filter, the connection, the aggregate.
    let r = app
        .gql_as(None, "query($id: ID!) { reviews(minRating: 4, orderBy: RATING_DESC) { rating } reviewsConnection(first: 1) { totalCount } reviewsAggregate(where: { rating: { lt: 4 } }) { count } review(id: $id) { rating } }", json!({ "id": four.to_string() }))
        .await;
    assert_eq!(
        r.data()["reviews"],
        json!([{ "rating": 5 }, { "rating": 4 }])
    );
    assert_eq!(r.data()["reviewsConnection"]["totalCount"], 4);
    assert_eq!(r.data()["reviewsAggregate"]["count"], 2);
    assert_eq!(r.data()["review"]["rating"], 4);
}
