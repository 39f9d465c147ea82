//! The seeds' order saga, orchestrated: order placed -> reserve inventory -> process
//! payment -> ship -> completed. A declined payment, or one that does not answer within
//! `PAYMENT_TIMEOUT_MS`, releases the inventory and cancels the order (compensated). Its
//! events and commands, and the saga as plain code.

#![allow(dead_code, unreachable_pub)] // shared with the tests, which use parts of it

use herald::saga::{Compensations, Decision, End, Incoming, Saga};
use serde::{Deserialize, Serialize};

/// How long a payment may take before the order is compensated.
pub const PAYMENT_TIMEOUT_MS: i64 = 1_500;

macro_rules! order_event {
    ($name:ident, $type:literal $(, $field:ident: $ty:ty)*) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub order_id: String,
            $(pub $field: $ty,)*
        }
        herald::event!($name, type = $type, version = 1, key = order_id);
    };
}

order_event!(OrderPlaced, "order.placed", customer: String, amount_cents: u64);
order_event!(ReserveInventory, "inventory.reserve");
order_event!(InventoryReserved, "inventory.reserved");
order_event!(ReleaseInventory, "inventory.release");
order_event!(ProcessPayment, "payment.process", amount_cents: u64);
order_event!(PaymentSucceeded, "payment.succeeded");
order_event!(PaymentDeclined, "payment.declined", reason: String);
order_event!(ShipOrder, "shipping.ship");
order_event!(OrderShipped, "shipment.shipped");
order_event!(CancelOrder, "order.cancel", reason: String);

/// Where an order's saga stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    pub order_id: String,
    pub amount_cents: u64,
    pub step: String,
    pub undo: Compensations,
}

/// The saga: instances are found by the `orderId` in the data; with a `suffix`, only
/// orders whose id ends with it are this saga's (runs sharing a broker keep apart).
#[derive(Debug, Clone, Default)]
pub struct OrderSaga {
    pub suffix: String,
}

pub const STEPS: [&str; 3] = ["reserve-inventory", "process-payment", "ship"];

/// The events the saga reacts to (each on the topic of its name).
pub const REPLIES: [&str; 5] =
    ["order.placed", "inventory.reserved", "payment.succeeded", "payment.declined", "shipment.shipped"];

/// The commands it sends (each on the topic of its name).
pub const COMMANDS: [&str; 5] =
    ["inventory.reserve", "payment.process", "shipping.ship", "inventory.release", "order.cancel"];

impl OrderSaga {
    /// Undoes the completed steps, last first, and cancels the order.
    fn compensate(mut state: OrderState, reason: &str) -> Decision<OrderState> {
        let undo = state.undo.unwind();
        let cancel = CancelOrder { order_id: state.order_id.clone(), reason: reason.to_string() };
        state.step = "compensated".into();
        Decision::to(state).cancel("payment").compensate(undo).send(cancel).note(reason).end(End::Compensated)
    }
}

impl Saga for OrderSaga {
    type State = OrderState;

    fn name(&self) -> &str {
        "order"
    }

    fn steps(&self) -> &[&str] {
        &STEPS
    }

    fn starts(&self) -> &[&str] {
        &["order.placed"]
    }

    fn handles(&self) -> &[&str] {
        &REPLIES
    }

    fn instance_of(&self, event: &Incoming) -> Option<String> {
        event.field("orderId").filter(|id| id.ends_with(&self.suffix))
    }

    fn on_event(&self, state: &OrderState, event: &Incoming, now_ms: i64) -> Decision<OrderState> {
        let mut state = state.clone();
        let order_id = state.order_id.clone();
        match (event.event_type.as_str(), state.step.as_str()) {
            ("order.placed", "") => {
                let Ok(placed) = event.data::<OrderPlaced>() else { return Decision::to(state).note("unreadable") };
                (state.order_id, state.amount_cents, state.step) =
                    (placed.order_id.clone(), placed.amount_cents, STEPS[0].into());
                Decision::to(state).send(ReserveInventory { order_id: placed.order_id }).step(STEPS[0])
            }
            ("inventory.reserved", "reserve-inventory") => {
                state.undo.done(STEPS[0], ReleaseInventory { order_id: order_id.clone() });
                state.step = STEPS[1].into();
                let pay = ProcessPayment { order_id, amount_cents: state.amount_cents };
                Decision::to(state).send(pay).deadline("payment", now_ms + PAYMENT_TIMEOUT_MS).step(STEPS[1])
            }
            ("payment.succeeded", "process-payment") => {
                state.step = STEPS[2].into();
                Decision::to(state).cancel("payment").send(ShipOrder { order_id }).step(STEPS[2])
            }
            ("payment.declined", "process-payment") => Self::compensate(state, "payment declined"),
            ("shipment.shipped", "ship") => {
                state.step = "completed".into();
                Decision::to(state).end(End::Completed)
            }
            // Replies that overtook the one the saga waits for come back later.
            ("payment.succeeded" | "payment.declined" | "shipment.shipped", "reserve-inventory")
            | ("shipment.shipped", "process-payment") => Decision::not_yet(state),
            (other, step) => Decision::to(state.clone()).note(format!("ignored {other} at {step}")),
        }
    }

    fn on_deadline(&self, state: &OrderState, name: &str, _now_ms: i64) -> Decision<OrderState> {
        match (name, state.step.as_str()) {
            ("payment", "process-payment") => Self::compensate(state.clone(), "payment timed out"),
            _ => Decision::to(state.clone()),
        }
    }
}
