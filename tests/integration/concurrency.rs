//! No oversell: many concurrent orders for one SKU take exactly the stock there is.

use futures::future::join_all;

use super::support::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_orders_for_fifty_units_sell_exactly_fifty() {
    let app = TestApp::spawn().await;
    app.product("hot", 10.0, 50).await;
    let statuses: Vec<u16> =
        join_all((0..200).map(|_| async { app.order(&[("hot", 1)]).await.status().as_u16() }))
            .await;
    let placed = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((placed, refused), (50, 150), "{statuses:?}");
    assert_eq!(app.stock("hot").await, 0);
    assert_eq!(
        app.json("/api/order?limit=1000")
            .await
            .as_array()
            .unwrap()
            .len(),
        50
    );
    app.shutdown().await;
}
