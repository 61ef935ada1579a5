//! agora: an e-commerce backend of supervised actors persisted in sled, behind a warp gateway,
//! with an Eureka-style registry and a Kafka notifier.

pub mod actors;
pub mod app;
pub mod broker;
pub mod cluster;
/// mimalloc instead of glibc's malloc: under order load glibc's allocator took about 12% of
/// the CPU (profiled with perf), most of it in contention between worker threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod codec;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod registry;
pub mod routing;
pub mod service;
pub mod storage;
pub mod telemetry;
#[cfg(test)]
mod test_support;
