//! Fuzzes the record decoder: any bytes read from sled, decoded as any stored type, give a value
//! or a `CodecError`, never a panic, a hang or a huge allocation; what decodes re-encodes stably.

#![no_main]

use agora::actors::notification::NotificationRecord;
use agora::codec::{decode, encode};
use agora::domain::{Order, OrderEvent, Product, StockLevel};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(value) = decode::<T>(bytes) {
        let encoded = encode(&value).expect("a decoded record encodes");
        let again: T = decode(&encoded).expect("an encoded record decodes");
        assert_eq!(encode(&again).expect("encodes"), encoded, "stable round trip");
    }
}

fuzz_target!(|bytes: &[u8]| {
    round_trip::<Product>(bytes);
    round_trip::<StockLevel>(bytes);
    round_trip::<Order>(bytes);
    round_trip::<OrderEvent>(bytes);
    round_trip::<NotificationRecord>(bytes);
});
