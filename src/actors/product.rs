//! Product: one actor per product owns its catalog entry. Creating a product seeds its SKU's
//! stock at the stock actor first, then writes the product, so a retry after a crash converges
//! (the product id is derived from the SKU). Order actors read prices here.

use ractor::ActorProcessingErr;
use serde::{Deserialize, Serialize};

use super::entity::Entity;
use super::stock::SeedStock;
use super::{Deps, Reply, ShopError};
use crate::config::Role;
use crate::domain::{Description, Price, Product, ProductId, ProductName, Sku};
use crate::registry::PRODUCT_SERVICE;
use crate::storage::{self, StorageError};

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

pub enum ProductCommand {
    GetProduct {
        reply: Reply<Product>,
    },
    CreateProduct {
        product: Product,
        quantity: Option<u32>,
        reply: Reply<ProductView>,
    },
    UpdateProduct {
        changes: ProductChanges,
        reply: Reply<Product>,
    },
    DeleteProduct {
        reply: Reply<()>,
    },
}

/// The requests the gateway and order actors send, on this node or from another one; each
/// becomes the [`ProductCommand`] of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub struct GetProduct {}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateProduct {
    pub product: Product,
    pub quantity: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UpdateProduct {
    pub changes: ProductChanges,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteProduct {}

crate::entity_requests!(ProductEntity, ProductCommand {
    GetProduct {} -> Product, writes: false;
    CreateProduct { product, quantity } -> ProductView, writes: true;
    UpdateProduct { changes } -> Product, writes: true;
    DeleteProduct {} -> (), writes: true;
});

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

    fn load(deps: &Deps, key: &ProductId) -> Result<Self::State, StorageError> {
        storage::get(&deps.storage.products, key.as_bytes())
    }

    async fn handle(
        deps: &Deps,
        id: &ProductId,
        state: &mut Self::State,
        command: ProductCommand,
    ) -> Result<(), ActorProcessingErr> {
        let not_found = || ShopError::NotFound(format!("product {id}"));
        match command {
            ProductCommand::GetProduct { reply } => {
                let _ = reply.send(state.clone().ok_or_else(not_found));
            }
            ProductCommand::CreateProduct {
                product,
                quantity,
                reply,
            } => {
                if state.is_some() {
                    let _ = reply.send(Err(ShopError::SkuTaken(product.sku.to_string())));
                    return Ok(());
                }
                let seeded = seed_stock(deps, &product.sku, quantity).await;
                let result = match seeded {
                    Ok(quantity) => save_durably(deps, state, product)
                        .await
                        .map(|product| ProductView { product, quantity }),
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            ProductCommand::UpdateProduct { changes, reply } => {
                let Some(current) = state.clone() else {
                    let _ = reply.send(Err(not_found()));
                    return Ok(());
                };
                let product = Product {
                    name: changes.name,
                    description: changes.description,
                    price: changes.price,
                    ..current
                };
                let _ = reply.send(save_durably(deps, state, product).await);
            }
            ProductCommand::DeleteProduct { reply } => {
                if state.is_none() {
                    let _ = reply.send(Err(not_found()));
                    return Ok(());
                }
                deps.storage.products.remove(id.as_bytes())?;
                *state = None;
                let _ = reply.send(deps.storage.durable().await.map_err(ShopError::from));
            }
        }
        Ok(())
    }

    async fn query(deps: Deps, query: ProductQuery) {
        let ProductQuery::List {
            after,
            limit,
            reply,
        } = query;
        let list = || -> Result<Vec<ProductView>, StorageError> {
            let after = after.map(|id| id.as_bytes().to_vec());
            storage::scan::<Product>(&deps.storage.products, after.as_deref(), limit)?
                .into_iter()
                .map(|(_, product)| {
                    let stock: Option<crate::domain::StockLevel> =
                        storage::get(&deps.storage.stock, product.sku.as_str().as_bytes())?;
                    Ok(ProductView {
                        quantity: stock.map_or(0, |s| s.quantity),
                        product,
                    })
                })
                .collect()
        };
        let _ = reply.send(list().map_err(ShopError::from));
    }

    /// Unknown ids are not kept: a scan of random ids leaves no actors behind.
    fn keep_alive(state: &Self::State) -> bool {
        state.is_some()
    }

    fn reject(command: ProductCommand, error: ShopError) {
        match command {
            ProductCommand::GetProduct { reply } | ProductCommand::UpdateProduct { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            ProductCommand::CreateProduct { reply, .. } => drop(reply.send(Err(error))),
            ProductCommand::DeleteProduct { reply } => drop(reply.send(Err(error))),
        }
    }
}

async fn seed_stock(deps: &Deps, sku: &Sku, quantity: Option<u32>) -> Result<u32, ShopError> {
    let seed = SeedStock { quantity };
    Ok(deps.directory.ask(sku.clone(), seed).await?.quantity)
}

async fn save_durably(
    deps: &Deps,
    state: &mut Option<Product>,
    product: Product,
) -> Result<Product, ShopError> {
    storage::put(&deps.storage.products, product.id.as_bytes(), &product)?;
    *state = Some(product.clone());
    deps.storage.durable().await?;
    Ok(product)
}
