//! Order routes: `POST/GET /api/order`, `GET /api/order/{orderNumber}`,
//! `POST /api/order/{orderNumber}/cancel`. Talks to the order actors, which run the saga.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{ApiError, ErrorBody};
use super::filters::{
    call, created, json_response, page, serve, Call, LineJson, Paging, WholeNumber,
};
use super::GatewayCtx;
use crate::actors::order::{CancelOrder, GetOrder, PlaceOrder, RequestedLine};
use crate::domain::{
    parse_line_quantity, Amount, Invalid, Order, OrderNumber, OrderStatus, Price, Sku,
    MAX_ORDER_LINES,
};
use crate::error::ShopError;

/// The body of `POST /api/order` (public for the request fuzz target).
#[derive(Deserialize, ToSchema)]
pub struct OrderBody {
    /// 1 to 100 lines; lines of one SKU are added up.
    #[serde(rename = "orderLineItemsDtoList")]
    #[schema(min_items = 1, max_items = 100)]
    lines: Vec<LineBody>,
}

/// One line of an order to place.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineBody {
    #[schema(value_type = Sku)]
    sku_code: String,
    /// The unit price the client expects; when it differs from the catalog's the order is
    /// refused with `price_changed`. Absent: the catalog's.
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 1000000000)]
    price: Option<serde_json::Number>,
    #[schema(value_type = i64, minimum = 1, maximum = 10000)]
    quantity: WholeNumber,
}

impl OrderBody {
    pub fn validate(self) -> Result<Vec<RequestedLine>, Invalid> {
        if self.lines.is_empty() {
            return Err(Invalid::new(
                "orderLineItemsDtoList",
                "must have at least one line",
            ));
        }
        if self.lines.len() > MAX_ORDER_LINES {
            return Err(Invalid::new(
                "orderLineItemsDtoList",
                format!("must have at most {MAX_ORDER_LINES} lines"),
            ));
        }
        self.lines
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                let field = |name: &str| format!("orderLineItemsDtoList[{i}].{name}");
                let sku = Sku::parse(&line.sku_code)
                    .map_err(|e| Invalid::new(field("skuCode"), e.message))?;
                let price = line
                    .price
                    .map(|p| Price::parse(&field("price"), &p))
                    .transpose()?;
                let quantity = parse_line_quantity(&field("quantity"), line.quantity.0)?;
                Ok(RequestedLine {
                    sku,
                    price,
                    quantity,
                })
            })
            .collect()
    }
}

/// An order as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson {
    #[schema(format = "uuid")]
    order_number: String,
    #[schema(value_type = OrderStatus)]
    status: &'static str,
    lines: Vec<LineJson>,
    /// The sum of price × quantity over the lines.
    total: Amount,
    /// Milliseconds since the Unix epoch.
    created_at: u64,
}

impl From<&Order> for OrderJson {
    fn from(order: &Order) -> OrderJson {
        OrderJson {
            order_number: order.number.to_string(),
            status: order.status.as_str(),
            lines: order.lines.iter().map(LineJson::from).collect(),
            total: order.total.amount(),
            created_at: order.created_ms,
        }
    }
}

pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    const ITEM: &str = "/api/order/{orderNumber}";
    let collection = warp::path!("api" / "order").and(
        (warp::post()
            .and(call(ctx.clone()))
            .then(|c| serve(c, "/api/order", place)))
        .or(warp::get()
            .and(call(ctx.clone()))
            .then(|c| serve(c, "/api/order", list)))
        .unify(),
    );
    let item = warp::path!("api" / "order" / String)
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|n, c| serve(c, ITEM, move |c| get(c, n)));
    let cancel = warp::path!("api" / "order" / String / "cancel")
        .and(warp::post())
        .and(call(ctx))
        .then(|n, c| serve(c, "/api/order/{orderNumber}/cancel", move |c| cancel(c, n)));
    collection.or(item).unify().or(cancel).unify().boxed()
}

fn idempotency_key(call: &Call) -> Result<Option<String>, ApiError> {
    let Some(value) = call.headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|key| (1..=255).contains(&key.len()))
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            Invalid::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
            .into()
        })
}

/// Places an order: every line is reserved, or none. With an `Idempotency-Key`, a retry gets
/// the same order.
#[utoipa::path(post, path = "/api/order", operation_id = "placeOrder", request_body = OrderBody,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255)),
    responses(
        (status = 201, description = "Placed (or, with `Idempotent-Replayed: true`, placed before)",
            body = OrderJson, headers(
                ("location" = String, description = "The order's URL"),
                ("idempotent-replayed" = String, description = "`true` on a replay"))),
        (status = 409, description = "`out_of_stock` or `price_changed`, with `skuCodes`",
            body = ErrorBody),
        (status = 422, description = "`unknown_sku` with `skuCodes`, or `idempotency_key_reused`",
            body = ErrorBody),
    ))]
async fn place(call: Call) -> Result<Response, ApiError> {
    let key = idempotency_key(&call)?;
    let lines = call.json::<OrderBody>()?.validate()?;
    let number = key
        .as_deref()
        .map_or_else(OrderNumber::new, OrderNumber::for_idempotency_key);
    let placed = call.ctx.ask(number, PlaceOrder { lines }).await?;
    let body = OrderJson::from(&placed.order);
    let mut response = created(format!("/api/order/{number}"), &body);
    if !placed.created {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Lists orders, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/order", operation_id = "listOrders", params(Paging), responses(
    (status = 200, description = "One page", body = Vec<OrderJson>, headers(
        ("x-next-cursor" = String, description = "The `after` of the next page, when full"))),
    (status = 400, description = "A bad `limit` or `after` (`invalid_input`)", body = ErrorBody),
))]
async fn list(call: Call) -> Result<Response, ApiError> {
    let limit = call.limit()?;
    let after = call
        .query_param("after")?
        .map(|raw| OrderNumber::parse(&raw))
        .transpose()?;
    let directory = &call.ctx.directory;
    let mut gathered = directory.list_orders(after, limit).await?;
    let next = gathered.first_page(limit, |o| o.number);
    let orders: Vec<OrderJson> = gathered.items.iter().map(OrderJson::from).collect();
    Ok(page(
        &orders,
        next.map(|n| n.to_string()),
        &gathered.missing,
    ))
}

fn parse_number(raw: &str) -> Result<OrderNumber, ApiError> {
    OrderNumber::parse(raw).map_err(|_| ShopError::NotFound(format!("order {raw}")).into())
}

/// One order.
#[utoipa::path(get, path = "/api/order/{orderNumber}", operation_id = "getOrder",
    params(("orderNumber" = String, Path, format = "uuid")),
    responses(
        (status = 200, description = "The order", body = OrderJson),
        (status = 404, description = "No such order (`not_found`)", body = ErrorBody),
    ))]
async fn get(call: Call, number: String) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let order = call.ctx.ask(number, GetOrder {}).await?;
    Ok(json_response(StatusCode::OK, &OrderJson::from(&order)))
}

/// Cancels an order; its units go back to stock once.
#[utoipa::path(post, path = "/api/order/{orderNumber}/cancel", operation_id = "cancelOrder",
    params(("orderNumber" = String, Path, format = "uuid")),
    responses(
        (status = 200, description = "The order, cancelled", body = OrderJson),
        (status = 404, description = "No such order (`not_found`)", body = ErrorBody),
        (status = 409, description = "Cancelled before (`already_cancelled`)", body = ErrorBody),
    ))]
async fn cancel(call: Call, number: String) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let order = call.ctx.ask(number, CancelOrder {}).await?;
    Ok(json_response(StatusCode::OK, &OrderJson::from(&order)))
}
