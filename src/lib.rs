//! agora: an e-commerce backend of supervised actors persisted in sled, behind a warp gateway,
//! with an Eureka-style registry and a Kafka notifier.

pub mod codec;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod storage;
pub mod health;
