#![allow(unreachable_pub, dead_code)] // shared by the example and the tests, each using part of it
//! The seeds' order as an event-sourced aggregate: placed, paid, shipped, cancelled, with
//! the rules a real order keeps (shared by the `order` example and the store's tests).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer: String,
    pub total_cents: u64,
}
herald::event!(OrderPlaced, type = "order.placed", version = 1, key = order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: String,
    pub amount_cents: u64,
}
herald::event!(OrderPaid, type = "order.paid", version = 1, key = order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: String,
}
herald::event!(OrderShipped, type = "order.shipped", version = 1, key = order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: String,
    pub reason: String,
}
herald::event!(OrderCancelled, type = "order.cancelled", version = 1, key = order_id);

#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    Placed(OrderPlaced),
    Paid(OrderPaid),
    Shipped(OrderShipped),
    Cancelled(OrderCancelled),
}
herald::events!(OrderEvent { Placed(OrderPlaced), Paid(OrderPaid), Shipped(OrderShipped), Cancelled(OrderCancelled) });

#[derive(Debug, Clone)]
pub enum OrderCommand {
    Place { order_id: String, customer: String, total_cents: u64 },
    Pay { amount_cents: u64 },
    Ship,
    Cancel { reason: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[default]
    New,
    Placed,
    Paid,
    Shipped,
    Cancelled,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer: String,
    pub total_cents: u64,
    pub paid_cents: u64,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    AlreadyPlaced,
    NotPlaced,
    WrongAmount { due: u64, offered: u64 },
    NotPaid,
    Cancelled,
    AlreadyShipped,
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderError::AlreadyPlaced => write!(f, "the order was already placed"),
            OrderError::NotPlaced => write!(f, "there is no such order"),
            OrderError::WrongAmount { due, offered } => write!(f, "{offered} cents offered, {due} due"),
            OrderError::NotPaid => write!(f, "an unpaid order cannot ship"),
            OrderError::Cancelled => write!(f, "a cancelled order cannot change"),
            OrderError::AlreadyShipped => write!(f, "a shipped order cannot change"),
        }
    }
}

impl herald::store::Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let order_id = self.id.clone();
        match (command, self.status) {
            (OrderCommand::Place { order_id, customer, total_cents }, Status::New) => {
                Ok(vec![OrderEvent::Placed(OrderPlaced {
                    order_id: order_id.clone(),
                    customer: customer.clone(),
                    total_cents: *total_cents,
                })])
            }
            (OrderCommand::Place { .. }, _) => Err(OrderError::AlreadyPlaced),
            (_, Status::New) => Err(OrderError::NotPlaced),
            (_, Status::Cancelled) => Err(OrderError::Cancelled),
            (_, Status::Shipped) => Err(OrderError::AlreadyShipped),
            (OrderCommand::Pay { amount_cents }, Status::Placed) if *amount_cents != self.total_cents => {
                Err(OrderError::WrongAmount { due: self.total_cents, offered: *amount_cents })
            }
            (OrderCommand::Pay { amount_cents }, Status::Placed) => {
                Ok(vec![OrderEvent::Paid(OrderPaid { order_id, amount_cents: *amount_cents })])
            }
            (OrderCommand::Pay { .. }, _) => Ok(Vec::new()), // paid already: nothing to do
            (OrderCommand::Ship, Status::Paid) => Ok(vec![OrderEvent::Shipped(OrderShipped { order_id })]),
            (OrderCommand::Ship, _) => Err(OrderError::NotPaid),
            (OrderCommand::Cancel { reason }, _) => {
                Ok(vec![OrderEvent::Cancelled(OrderCancelled { order_id, reason: reason.clone() })])
            }
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed(e) => {
                (self.id, self.customer, self.total_cents) = (e.order_id.clone(), e.customer.clone(), e.total_cents);
                self.status = Status::Placed;
            }
            OrderEvent::Paid(e) => {
                self.paid_cents += e.amount_cents;
                self.status = Status::Paid;
            }
            OrderEvent::Shipped(_) => self.status = Status::Shipped,
            OrderEvent::Cancelled(_) => self.status = Status::Cancelled,
        }
    }
}
