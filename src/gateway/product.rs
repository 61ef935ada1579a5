//! Product routes: `POST/GET /api/product`, `GET/PUT/DELETE /api/product/{id}`. Talks to the
//! product actors (and to the stock actors for quantities).

use std::sync::Arc;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::{ApiError, ErrorBody};
use super::filters::{call, created, json_response, page, serve, Call, Paging, WholeNumber};
use super::GatewayCtx;
use crate::actors::product::{
    CreateProduct, DeleteProduct, GetProduct, ProductChanges, ProductView, UpdateProduct,
};
use crate::actors::stock::GetStock;
use crate::domain::{
    parse_stock, Amount, Description, Invalid, Price, Product, ProductId, ProductName, Sku,
};
use crate::error::ShopError;

/// The body of `POST /api/product` and `PUT /api/product/{id}` (public for the request fuzz
/// target).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductBody {
    /// 1 to 200 characters after trimming.
    #[schema(example = "iPhone 13", min_length = 1, max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: String,
    /// In currency units, at most two decimals.
    #[schema(value_type = f64, minimum = 0, maximum = 1000000000, example = 1000)]
    price: serde_json::Number,
    /// Derived from the name when absent (`iPhone 13` → `iphone_13`); on `PUT` it may only
    /// repeat the product's own.
    #[schema(value_type = Option<Sku>)]
    sku_code: Option<String>,
    /// Stock to start with (`POST` only; set stock later with `PUT /api/inventory/{skuCode}`).
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1000000000)]
    quantity: Option<WholeNumber>,
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
            .map(|q| parse_stock("quantity", q.0))
            .transpose()?;
        Ok((sku, changes, quantity))
    }
}

/// A product as the API shows it, with the units in stock.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductJson {
    #[schema(format = "uuid")]
    id: String,
    #[schema(value_type = Sku)]
    sku_code: String,
    name: String,
    description: String,
    price: Amount,
    quantity: u32,
}

impl From<&ProductView> for ProductJson {
    fn from(view: &ProductView) -> ProductJson {
        let p = &view.product;
        ProductJson {
            id: p.id.to_string(),
            sku_code: p.sku.as_str().to_owned(),
            name: p.name.as_str().to_owned(),
            description: p.description.as_str().to_owned(),
            price: p.price.amount(),
            quantity: view.quantity,
        }
    }
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

/// Creates a product, and its stock when `quantity` is given.
#[utoipa::path(post, path = "/api/product", operation_id = "createProduct",
    request_body = ProductBody, responses(
    (status = 201, description = "Created", body = ProductJson,
        headers(("location" = String, description = "The product's URL"))),
    (status = 409, description = "A product has this SKU (`conflict`)", body = ErrorBody),
))]
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
    Ok(created(
        format!("/api/product/{id}"),
        &ProductJson::from(&view),
    ))
}

/// Lists products in id order, a page at a time.
#[utoipa::path(get, path = "/api/product", operation_id = "listProducts", params(Paging), responses(
    (status = 200, description = "One page", body = Vec<ProductJson>, headers(
        ("x-next-cursor" = String, description = "The `after` of the next page, when full"))),
    (status = 400, description = "A bad `limit` or `after` (`invalid_input`)", body = ErrorBody),
))]
async fn list(call: Call) -> Result<Response, ApiError> {
    let limit = call.limit()?;
    let after = call
        .query_param("after")?
        .map(|raw| ProductId::parse(&raw))
        .transpose()?;
    let ctx = &call.ctx;
    let directory = &ctx.directory;
    let mut gathered = directory.list_products(after, limit).await?;
    let next = gathered.first_page(limit, |v| v.product.id);
    let views = &mut gathered.items;
    if !directory.is_single() {
        // Each node counted its products' stock from its own storage; the stock may live on
        // another node.
        let products = views.drain(..).map(|v| with_quantity(ctx, v.product));
        *views = join_all(products)
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    }
    let views: Vec<ProductJson> = views.iter().map(ProductJson::from).collect();
    Ok(page(
        &views,
        next.map(|id| id.to_string()),
        &gathered.missing,
    ))
}

async fn with_quantity(ctx: &GatewayCtx, product: Product) -> Result<ProductView, ApiError> {
    let stock = ctx.ask(product.sku.clone(), GetStock {}).await?;
    Ok(ProductView {
        quantity: stock.map_or(0, |s| s.quantity),
        product,
    })
}

/// One product.
#[utoipa::path(get, path = "/api/product/{id}", operation_id = "getProduct",
    params(("id" = String, Path, format = "uuid")), responses(
    (status = 200, description = "The product", body = ProductJson),
    (status = 404, description = "No such product (`not_found`)", body = ErrorBody),
))]
async fn get(call: Call, id: String) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let product = call.ctx.ask(id, GetProduct {}).await?;
    let view = with_quantity(&call.ctx, product).await?;
    Ok(json_response(StatusCode::OK, &ProductJson::from(&view)))
}

/// Changes a product's name, description and price.
#[utoipa::path(put, path = "/api/product/{id}", operation_id = "updateProduct",
    params(("id" = String, Path, format = "uuid")), request_body = ProductBody,
    responses(
        (status = 200, description = "The product as changed", body = ProductJson),
        (status = 404, description = "No such product (`not_found`)", body = ErrorBody),
    ))]
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
    let view = with_quantity(&call.ctx, product).await?;
    Ok(json_response(StatusCode::OK, &ProductJson::from(&view)))
}

/// Deletes a product (its stock stays).
#[utoipa::path(delete, path = "/api/product/{id}", operation_id = "deleteProduct",
    params(("id" = String, Path, format = "uuid")), responses(
    (status = 204, description = "Deleted"),
    (status = 404, description = "No such product (`not_found`)", body = ErrorBody),
))]
async fn delete(call: Call, id: String) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    call.ctx.ask(id, DeleteProduct {}).await?;
    Ok(warp::reply::Reply::into_response(StatusCode::NO_CONTENT))
}

/// An id that is not a product id cannot name a product: 404, like any unknown id.
fn parse_id(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|_| ShopError::NotFound(format!("product {raw}")).into())
}
