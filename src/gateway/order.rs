//! Order routes: `POST/GET /api/order`, `GET /api/order/{orderNumber}`,
//! `POST /api/order/{orderNumber}/cancel`. Talks to the order actors, which run the saga.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::filters::{call, created, json_response, page, serve, Call};
use super::GatewayCtx;
use crate::actors::order::{CancelOrder, GetOrder, PlaceOrder, RequestedLine};
use crate::actors::ShopError;
use crate::cluster::remote::{list_orders, ListRequest};
use crate::config::Role;
use crate::domain::{
    line_json, parse_line_quantity, Invalid, Order, OrderNumber, Price, Sku, MAX_ORDER_LINES,
};

/// The body of `POST /api/order` (public for the request fuzz target).
#[derive(Deserialize)]
pub struct OrderBody {
    #[serde(rename = "orderLineItemsDtoList")]
    lines: Vec<LineBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineBody {
    sku_code: String,
    price: Option<serde_json::Number>,
    quantity: i64,
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
                let quantity = parse_line_quantity(&field("quantity"), line.quantity)?;
                Ok(RequestedLine {
                    sku,
                    price,
                    quantity,
                })
            })
            .collect()
    }
}

pub fn order_json(order: &Order) -> Value {
    json!({
        "orderNumber": order.number.to_string(),
        "status": order.status.as_str(),
        "lines": order.lines.iter().map(line_json).collect::<Vec<_>>(),
        "total": order.total.to_json(),
        "createdAt": order.created_ms,
    })
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

async fn place(call: Call) -> Result<Response, ApiError> {
    let key = idempotency_key(&call)?;
    let lines = call.json::<OrderBody>()?.validate()?;
    let number = key
        .as_deref()
        .map_or_else(OrderNumber::new, OrderNumber::for_idempotency_key);
    let placed = call.ctx.ask(number, PlaceOrder { lines }).await?;
    let mut response = created(format!("/api/order/{number}"), &order_json(&placed.order));
    if !placed.created {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn list(call: Call) -> Result<Response, ApiError> {
    let limit = call.limit()?;
    let after = call
        .query_param("after")?
        .map(|raw| OrderNumber::parse(&raw))
        .transpose()?;
    let directory = &call.ctx.directory;
    let mut gathered = directory
        .gather(
            directory.owners_of(Role::Order),
            ListRequest::Orders { after, limit },
            list_orders(directory, after, limit),
        )
        .await?;
    let orders = &mut gathered.items;
    orders.sort_by_key(|o| o.number);
    orders.truncate(limit);
    let next = orders
        .last()
        .filter(|_| orders.len() == limit)
        .map(|o| o.number.to_string());
    let items = orders.iter().map(order_json).collect();
    Ok(page(items, next, &gathered.missing))
}

fn parse_number(raw: &str) -> Result<OrderNumber, ApiError> {
    OrderNumber::parse(raw).map_err(|_| ShopError::NotFound(format!("order {raw}")).into())
}

async fn get(call: Call, number: String) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let order = call.ctx.ask(number, GetOrder {}).await?;
    Ok(json_response(StatusCode::OK, &order_json(&order)))
}

async fn cancel(call: Call, number: String) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let order = call.ctx.ask(number, CancelOrder {}).await?;
    Ok(json_response(StatusCode::OK, &order_json(&order)))
}
