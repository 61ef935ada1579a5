//! Product: one actor per product owns its catalog entry. Creating a product seeds its SKU's
//! stock at the stock actor first, then writes the product, so a retry after a crash converges
//! (the product id is derived from the SKU). Order actors read prices here.

use ractor::ActorProcessingErr;
use serde::{Deserialize, Serialize};

use super::entity::{Deps, Entity, Reply, Route};
use super::stock::{SeedStock, Stock};
use crate::config::Role;
use crate::domain::{Description, Price, Product, ProductId, ProductName, Sku};
use crate::entity_request;
use crate::error::ShopError;
use crate::registry::PRODUCT_SERVICE;
use crate::storage::{Batch, StorageError};

/// A product with its SKU's available quantity, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductView {
    pub product: Product,
    pub quantity: u32,
}

/// The fields a client may change.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProductChanges {
    pub name: ProductName,
    pub description: Description,
    pub price: Price,
}

/// The product protocol: what the gateway and order actors ask a product's actor, on this node
/// or from another one. Each variant carries its request and the reply for its answer.
#[derive(Serialize, Deserialize)]
pub enum ProductCommand {
    Get(GetProduct, Reply<Product>),
    Create(CreateProduct, Reply<ProductView>),
    Update(UpdateProduct, Reply<Product>),
    Delete(DeleteProduct, Reply<()>),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GetProduct {}
entity_request!(GetProduct => ProductEntity, ProductCommand::Get, Product, writes: false);

/// Create the product, seeding its SKU's stock with `quantity` (or 0 if it has none yet).
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateProduct {
    pub product: Product,
    pub quantity: Option<u32>,
}
entity_request!(CreateProduct => ProductEntity, ProductCommand::Create, ProductView, writes: true);

#[derive(Debug, Serialize, Deserialize)]
pub struct UpdateProduct {
    pub changes: ProductChanges,
}
entity_request!(UpdateProduct => ProductEntity, ProductCommand::Update, Product, writes: true);

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteProduct {}
entity_request!(DeleteProduct => ProductEntity, ProductCommand::Delete, (), writes: true);

pub enum ProductQuery {
    /// Products in id order after `after`, with their stock.
    List {
        after: Option<ProductId>,
        limit: usize,
        reply: Reply<Vec<ProductView>>,
    },
}

pub struct ProductEntity;

impl Entity for ProductEntity {
    const SERVICE: &'static str = PRODUCT_SERVICE;
    const KIND: &'static str = "product";
    const ROLE: Role = Role::Product;
    type Key = ProductId;
    type Command = ProductCommand;
    type Query = ProductQuery;
    type State = Option<Product>;
    /// Creating a product seeds its SKU's stock.
    type Calls = Route<Stock>;

    fn load(deps: &Deps<Self>, key: &ProductId) -> Result<Self::State, StorageError> {
        deps.storage.products.get(key)
    }

    async fn handle(
        deps: &Deps<Self>,
        id: &ProductId,
        state: &mut Self::State,
        command: ProductCommand,
    ) -> Result<(), ActorProcessingErr> {
        let not_found = || ShopError::NotFound(format!("product {id}"));
        match command {
            ProductCommand::Get(GetProduct {}, reply) => get(id, state, reply),
            ProductCommand::Create(CreateProduct { product, quantity }, reply) => {
                if state.is_some() {
                    reply.send(Err(ShopError::SkuTaken(product.sku.to_string())));
                    return Ok(());
                }
                let seeded = seed_stock(deps, &product.sku, quantity).await;
                let result = match seeded {
                    Ok(quantity) => save_durably(deps, state, product)
                        .await
                        .map(|product| ProductView { product, quantity }),
                    Err(e) => Err(e),
                };
                reply.send(result);
            }
            ProductCommand::Update(UpdateProduct { changes }, reply) => {
                let Some(current) = state.clone() else {
                    reply.send(Err(not_found()));
                    return Ok(());
                };
                let product = Product {
                    name: changes.name,
                    description: changes.description,
                    price: changes.price,
                    ..current
                };
                reply.send(save_durably(deps, state, product).await);
            }
            ProductCommand::Delete(DeleteProduct {}, reply) => {
                if state.is_none() {
                    reply.send(Err(not_found()));
                    return Ok(());
                }
                let mut batch = Batch::default();
                deps.storage.products.stage_remove(&mut batch, id);
                let result = match deps.commit(batch).await {
                    Ok(()) => {
                        *state = None;
                        deps.durable().await
                    }
                    Err(e) => Err(e),
                };
                reply.send(result);
            }
        }
        Ok(())
    }

    fn read(
        id: &ProductId,
        state: &Self::State,
        command: ProductCommand,
    ) -> Result<(), ProductCommand> {
        match command {
            ProductCommand::Get(GetProduct {}, reply) => {
                get(id, state, reply);
                Ok(())
            }
            other => Err(other),
        }
    }

    async fn query(deps: Deps<Self>, query: ProductQuery) {
        let ProductQuery::List {
            after,
            limit,
            reply,
        } = query;
        let list = || -> Result<Vec<ProductView>, StorageError> {
            deps.page(&deps.storage.products, after.as_ref(), limit)?
                .into_iter()
                .map(|(_, product)| {
                    // Reads another kind's table: only the stock actors write it.
                    let stock = deps.storage.stock.get(&product.sku)?;
                    Ok(ProductView {
                        quantity: stock.map_or(0, |s| s.quantity),
                        product,
                    })
                })
                .collect()
        };
        reply.send(list().map_err(ShopError::from));
    }

    /// Unknown ids are not kept: a scan of random ids leaves no actors behind.
    fn keep_alive(state: &Self::State) -> bool {
        state.is_some()
    }
}

fn get(id: &ProductId, state: &Option<Product>, reply: Reply<Product>) {
    let found = state.clone();
    reply.send(found.ok_or_else(|| ShopError::NotFound(format!("product {id}"))));
}

async fn seed_stock(
    deps: &Deps<ProductEntity>,
    sku: &Sku,
    quantity: Option<u32>,
) -> Result<u32, ShopError> {
    let seed = SeedStock { quantity };
    Ok(deps.calls.ask(sku.clone(), seed).await?.quantity)
}

async fn save_durably(
    deps: &Deps<ProductEntity>,
    state: &mut Option<Product>,
    product: Product,
) -> Result<Product, ShopError> {
    let mut batch = Batch::default();
    deps.storage
        .products
        .stage(&mut batch, &product.id, &product)?;
    deps.commit(batch).await?;
    *state = Some(product.clone());
    deps.durable().await?;
    Ok(product)
}
