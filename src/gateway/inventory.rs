//! Inventory routes: `GET /api/inventory?skuCode=a&skuCode=b` (as in the original, plus the
//! quantity) and `PUT /api/inventory/{skuCode}`. Talks to the stock actors.

use std::sync::Arc;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::{ApiError, ErrorBody};
use super::filters::{call, json_response, serve, Call, WholeNumber};
use super::GatewayCtx;
use crate::actors::stock::{GetStock, SetStock};
use crate::domain::{parse_stock, Invalid, Sku, StockLevel};

/// Most SKUs one inventory query may name.
const MAX_SKUS_PER_QUERY: usize = 100;

/// A SKU's stock as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockJson {
    #[schema(value_type = Sku)]
    sku_code: String,
    in_stock: bool,
    /// Units available to order.
    quantity: u32,
}

impl From<&StockLevel> for StockJson {
    fn from(level: &StockLevel) -> StockJson {
        StockJson {
            sku_code: level.sku.as_str().to_owned(),
            in_stock: level.quantity > 0,
            quantity: level.quantity,
        }
    }
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

/// The stock of each SKU named (`?skuCode=a&skuCode=b`); SKUs without stock are left out.
#[utoipa::path(get, path = "/api/inventory", operation_id = "checkStock",
    params(("skuCode" = Option<Vec<Sku>>, Query, explode, description = "Up to 100 SKUs")),
    responses(
        (status = 200, description = "The stock of the SKUs known", body = Vec<StockJson>),
        (status = 400, description = "A bad SKU or too many (`invalid_input`)", body = ErrorBody),
    ))]
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
            found.push(StockJson::from(&level));
        }
    }
    Ok(json_response(StatusCode::OK, &found))
}

/// The body of `PUT /api/inventory/{skuCode}`.
#[derive(Deserialize, ToSchema)]
pub struct StockBody {
    /// The new stock level.
    #[schema(value_type = i64, minimum = 0, maximum = 1000000000)]
    quantity: WholeNumber,
}

/// Sets a SKU's stock (a product need not exist for it).
#[utoipa::path(put, path = "/api/inventory/{skuCode}", operation_id = "setStock",
    params(("skuCode" = Sku, Path)), request_body = StockBody,
    responses(
        (status = 200, description = "The stock as set", body = StockJson),
    ))]
async fn set_stock(call: Call, sku: String) -> Result<Response, ApiError> {
    let sku = Sku::parse(&sku)?;
    let quantity = parse_stock("quantity", call.json::<StockBody>()?.quantity.0)?;
    let level = call.ctx.ask(sku, SetStock { quantity }).await?;
    Ok(json_response(StatusCode::OK, &StockJson::from(&level)))
}
