//! Fuzzes request parsing: any bytes as the body of `POST /api/order` or `POST /api/product` are
//! either refused (a JSON or validation error) or validated, never a panic.

#![no_main]

use agora::gateway::order::OrderBody;
use agora::gateway::product::ProductBody;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<OrderBody>(bytes) {
        let _ = body.validate();
    }
    if let Ok(body) = serde_json::from_slice::<ProductBody>(bytes) {
        let _ = body.validate();
    }
});
