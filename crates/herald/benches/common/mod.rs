//! The event the publish benches send, shared by `runtime` and `schemas`.

use serde::{Deserialize, Serialize};

/// An order event with a JSON Schema (the `schemas` bench registers it).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct OrderPlaced {
    pub(crate) order_id: String,
    pub(crate) customer_id: String,
    pub(crate) amount_cents: u64,
}
herald::event!(OrderPlaced, type = "order.placed", version = 1, topic = "bench.orders", key = order_id);

/// Publishes in flight at once.
pub(crate) const IN_FLIGHT: usize = 10_000;

/// Event `n`: 10,000 order keys, 977 customers.
pub(crate) fn event(n: u64) -> OrderPlaced {
    OrderPlaced {
        order_id: format!("order-{}", n % 10_000),
        customer_id: format!("customer-{}", n % 977),
        amount_cents: n,
    }
}
