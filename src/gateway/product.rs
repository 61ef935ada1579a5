//! Product routes: `POST/GET /api/product`, `GET/PUT/DELETE /api/product/{id}`. Talks to the
//! product actors (and to the stock actors for quantities).

use std::sync::Arc;

use futures::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::filters::{call, created, json_response, page, serve, Call};
use super::GatewayCtx;
use crate::actors::product::{
    CreateProduct, DeleteProduct, GetProduct, ProductChanges, ProductView, UpdateProduct,
};
use crate::actors::stock::GetStock;
use crate::actors::ShopError;
use crate::cluster::remote::{list_products, ListRequest};
use crate::config::Role;
use crate::domain::{
    parse_stock, Description, Invalid, Price, Product, ProductId, ProductName, Sku,
};

/// The body of `POST /api/product` and `PUT /api/product/{id}` (public for the request fuzz
/// target).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductBody {
    name: String,
    #[serde(default)]
    description: String,
    price: serde_json::Number,
    sku_code: Option<String>,
    quantity: Option<i64>,
}

impl ProductBody {
    pub fn validate(self) -> Result<(Sku, ProductChanges, Option<u32>), Invalid> {
        let name = ProductName::parse(&self.name)?;
        let sku = match &self.sku_code {
            Some(raw) => Sku::parse(raw)?,
            None => Sku::derive_from(&name)?,
        };
        let changes = ProductChanges {
            name,
            description: Description::parse(&self.description)?,
            price: Price::parse("price", &self.price)?,
        };
        let quantity = self
            .quantity
            .map(|q| parse_stock("quantity", q))
            .transpose()?;
        Ok((sku, changes, quantity))
    }
}

pub fn view_json(view: &ProductView) -> Value {
    let p = &view.product;
    json!({
        "id": p.id.to_string(),
        "skuCode": p.sku.as_str(),
        "name": p.name.as_str(),
        "description": p.description.as_str(),
        "price": p.price.to_json(),
        "quantity": view.quantity,
    })
}

pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    const ITEM: &str = "/api/product/{id}";
    let collection = warp::path!("api" / "product").and(
        (warp::post()
            .and(call(ctx.clone()))
            .then(|c| serve(c, "/api/product", create)))
        .or(warp::get()
            .and(call(ctx.clone()))
            .then(|c| serve(c, "/api/product", list)))
        .unify(),
    );
    let item = || warp::path!("api" / "product" / String);
    let get_item = item()
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|id, c| serve(c, ITEM, move |c| get(c, id)));
    let put_item = item()
        .and(warp::put())
        .and(call(ctx.clone()))
        .then(|id, c| serve(c, ITEM, move |c| update(c, id)));
    let delete_item = item()
        .and(warp::delete())
        .and(call(ctx))
        .then(|id, c| serve(c, ITEM, move |c| delete(c, id)));
    collection
        .or(get_item)
        .unify()
        .or(put_item)
        .unify()
        .or(delete_item)
        .unify()
        .boxed()
}

async fn create(call: Call) -> Result<Response, ApiError> {
    let (sku, changes, quantity) = call.json::<ProductBody>()?.validate()?;
    let id = ProductId::for_sku(&sku);
    let product = Product {
        id,
        sku,
        name: changes.name,
        description: changes.description,
        price: changes.price,
    };
    let view = call
        .ctx
        .ask(id, CreateProduct { product, quantity })
        .await?;
    Ok(created(format!("/api/product/{id}"), &view_json(&view)))
}

async fn list(call: Call) -> Result<Response, ApiError> {
    let limit = call.limit()?;
    let after = call
        .query_param("after")?
        .map(|raw| ProductId::parse(&raw))
        .transpose()?;
    let ctx = &call.ctx;
    let directory = &ctx.directory;
    let mut gathered = directory
        .gather(
            directory.owners_of(Role::Product),
            ListRequest::Products { after, limit },
            list_products(directory, after, limit),
        )
        .await?;
    let views = &mut gathered.items;
    views.sort_by_key(|v| v.product.id);
    views.truncate(limit);
    if !directory.layout.is_single() {
        // Each node counted its products' stock from its own storage; the stock may live on
        // another node.
        let products = views.drain(..).map(|v| with_quantity(ctx, v.product));
        *views = join_all(products)
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    }
    let next = views
        .last()
        .filter(|_| views.len() == limit)
        .map(|v| v.product.id.to_string());
    let items = views.iter().map(view_json).collect();
    Ok(page(items, next, &gathered.missing))
}

async fn with_quantity(ctx: &GatewayCtx, product: Product) -> Result<ProductView, ApiError> {
    let stock = ctx.ask(product.sku.clone(), GetStock {}).await?;
    Ok(ProductView {
        quantity: stock.map_or(0, |s| s.quantity),
        product,
    })
}

async fn get(call: Call, id: String) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let product = call.ctx.ask(id, GetProduct {}).await?;
    Ok(json_response(
        StatusCode::OK,
        &view_json(&with_quantity(&call.ctx, product).await?),
    ))
}

async fn update(call: Call, id: String) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let body = call.json::<ProductBody>()?;
    if body.quantity.is_some() {
        return Err(Invalid::new("quantity", "set stock with PUT /api/inventory/{skuCode}").into());
    }
    let named_sku = body.sku_code.is_some();
    let (sku, changes, _) = body.validate()?;
    if named_sku && ProductId::for_sku(&sku) != id {
        return Err(Invalid::new("skuCode", "cannot change: it identifies the product").into());
    }
    let product = call.ctx.ask(id, UpdateProduct { changes }).await?;
    Ok(json_response(
        StatusCode::OK,
        &view_json(&with_quantity(&call.ctx, product).await?),
    ))
}

async fn delete(call: Call, id: String) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    call.ctx.ask(id, DeleteProduct {}).await?;
    Ok(warp::reply::Reply::into_response(StatusCode::NO_CONTENT))
}

/// An id that is not a product id cannot name a product: 404, like any unknown id.
fn parse_id(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|_| ShopError::NotFound(format!("product {raw}")).into())
}
