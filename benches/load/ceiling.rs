//! The ceiling: a minimal warp server that answers the same routes as agora with fixed JSON and
//! no work, so each scenario's speed can be given as a ratio to what warp itself can do here.

use std::net::SocketAddr;

use warp::Filter;

pub async fn start() -> SocketAddr {
    let product = warp::path!("api" / "product" / String).and(warp::get()).map(|id: String| {
        warp::reply::json(&serde_json::json!({"id": id, "skuCode": "s", "name": "n", "description": "d", "price": 10, "quantity": 5}))
    });
    let inventory = warp::path!("api" / "inventory")
        .and(warp::get())
        .and(warp::query::raw())
        .map(|_q: String| {
            warp::reply::json(
                &serde_json::json!([{"skuCode": "a", "inStock": true, "quantity": 5}]),
            )
        });
    let order = warp::path!("api" / "order").and(warp::post()).and(warp::body::bytes()).map(|_body: bytes::Bytes| {
        let order = serde_json::json!({"orderNumber": "0", "status": "PLACED", "lines": [], "total": 10, "createdAt": 0});
        warp::reply::with_status(warp::reply::json(&order), warp::http::StatusCode::CREATED)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let routes = product.or(inventory).or(order);
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    addr
}
