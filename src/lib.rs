//! agora: an e-commerce backend of supervised actors persisted in sled, behind a warp gateway,
//! with an Eureka-style registry and a Kafka notifier.

pub mod actors;
pub mod app;
pub mod broker;
pub mod codec;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod health;
pub mod metrics;
pub mod registry;
pub mod storage;
