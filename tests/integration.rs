//! Integration tests: a real server on loopback, a real sled directory per test, Kafka through
//! the embedded broker, and real `agora` processes for kill -9 and restart.
//! One binary, so the crate is linked once.

mod integration {
    pub mod bad_input;
    pub mod cluster;
    pub mod concurrency;
    pub mod console;
    pub mod crash;
    pub mod ecosystem;
    pub mod end_to_end;
    pub mod eureka_interop;
    pub mod faults;
    pub mod fuzzed;
    pub mod gateway_routes;
    pub mod health;
    pub mod layering;
    pub mod openapi;
    pub mod otlp;
    pub mod refusals;
    pub mod replicated;
    pub mod security;
    pub mod support;
}
