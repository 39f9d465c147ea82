//! The services the order saga orchestrates — inventory, payment and shipping — each a
//! consumer that answers its commands through the broker. Payment declines amounts over
//! `LIMIT_CENTS` and is slow for `-slow` orders: it answers after `late`, or never.

#![allow(dead_code, unreachable_pub)] // shared with the tests

use std::time::Duration;

use herald::Envelope;
use herald::consumer::{Consumer, ConsumerConfig, Context, HandlerError};

use super::saga::*;

/// Payments above this are declined.
pub const LIMIT_CENTS: u64 = 50_000;

/// The three services, answering only orders whose id ends with `run`.
pub fn services(brokers: &str, run: &str, late: Option<Duration>) -> Vec<Consumer> {
    let config = |group: &str, topics: &[&str]| ConsumerConfig::new(brokers, group, topics);
    let ours = {
        let run = run.to_string();
        move |order_id: &str| order_id.ends_with(&run)
    };
    let (o1, o2, o3) = (ours.clone(), ours.clone(), ours);
    let inventory = Consumer::new(config("inventory-service", &["inventory.reserve"])).on(
        move |command: Envelope<ReserveInventory>, ctx: Context| {
            let ours = o1(&command.data.order_id);
            async move {
                if ours {
                    ctx.publish(InventoryReserved { order_id: command.data.order_id }).await?;
                }
                Ok::<(), HandlerError>(())
            }
        },
    );
    let payment = Consumer::new(config("payment-service", &["payment.process"])).on(
        move |command: Envelope<ProcessPayment>, ctx: Context| {
            let ours = o2(&command.data.order_id);
            async move {
                let ProcessPayment { order_id, amount_cents } = command.data;
                if !ours {
                    return Ok(());
                }
                if order_id.contains("-slow") {
                    let Some(late) = late else { return Ok(()) };
                    tokio::time::sleep(late).await;
                }
                if amount_cents > LIMIT_CENTS {
                    let reason = format!("{amount_cents} cents is over the limit");
                    ctx.publish(PaymentDeclined { order_id, reason }).await?;
                } else {
                    ctx.publish(PaymentSucceeded { order_id }).await?;
                }
                Ok::<(), HandlerError>(())
            }
        },
    );
    let shipping = Consumer::new(config("shipping-service", &["shipping.ship"])).on(
        move |command: Envelope<ShipOrder>, ctx: Context| {
            let ours = o3(&command.data.order_id);
            async move {
                if ours {
                    ctx.publish(OrderShipped { order_id: command.data.order_id }).await?;
                }
                Ok::<(), HandlerError>(())
            }
        },
    );
    vec![inventory, payment, shipping]
}
