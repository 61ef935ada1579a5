//! Inventory routes: `GET /api/inventory?skuCode=a&skuCode=b` (as in the original, plus the
//! quantity) and `PUT /api/inventory/{skuCode}`. Talks to the stock actors.

use std::sync::Arc;

use futures::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::filters::{call, json_response, serve, Call};
use super::GatewayCtx;
use crate::actors::stock::{GetStock, SetStock};
use crate::domain::{parse_stock, Invalid, Sku, StockLevel};

/// Most SKUs one inventory query may name.
const MAX_SKUS_PER_QUERY: usize = 100;

fn level_json(level: &StockLevel) -> Value {
    json!({ "skuCode": level.sku.as_str(), "inStock": level.quantity > 0, "quantity": level.quantity })
}

pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    let query = warp::path!("api" / "inventory")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/api/inventory", check));
    let set = warp::path!("api" / "inventory" / String)
        .and(warp::put())
        .and(call(ctx))
        .then(|sku, c| serve(c, "/api/inventory/{skuCode}", move |c| set_stock(c, sku)));
    query.or(set).unify().boxed()
}

async fn check(call: Call) -> Result<Response, ApiError> {
    let skus = call
        .query_pairs()?
        .into_iter()
        .filter(|(key, _)| key == "skuCode")
        .map(|(_, value)| Sku::parse(&value))
        .collect::<Result<Vec<_>, _>>()?;
    if skus.len() > MAX_SKUS_PER_QUERY {
        return Err(Invalid::new(
            "skuCode",
            format!("at most {MAX_SKUS_PER_QUERY} per request"),
        )
        .into());
    }
    let ctx = &call.ctx;
    let lookups = skus.into_iter().map(|sku| ctx.ask(sku, GetStock {}));
    let mut found = Vec::new();
    for level in join_all(lookups).await {
        if let Some(level) = level? {
            found.push(level_json(&level));
        }
    }
    Ok(json_response(StatusCode::OK, &Value::Array(found)))
}

#[derive(Deserialize)]
struct StockBody {
    quantity: i64,
}

async fn set_stock(call: Call, sku: String) -> Result<Response, ApiError> {
    let sku = Sku::parse(&sku)?;
    let quantity = parse_stock("quantity", call.json::<StockBody>()?.quantity)?;
    let level = call.ctx.ask(sku, SetStock { quantity }).await?;
    Ok(json_response(StatusCode::OK, &level_json(&level)))
}
