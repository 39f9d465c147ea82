//! The `order_summary` projection: orders and total cents per customer and status. It
//! keeps each order's current status in `order_status`, so a status change moves the order
//! from one summary row to another.

use herald::projection::{ApplyFuture, Projection, SqliteProjections, Table, versioned};
use herald::store::{EventSet, StoredEvent};
use sqlx::{Sqlite, Transaction};

use crate::aggregate::{OrderEvent, Status};

pub(crate) struct OrderSummary;

const TABLES: [Table; 2] = [
    Table {
        name: "order_summary",
        create: "CREATE TABLE {table} (customer TEXT NOT NULL, status TEXT NOT NULL, orders BIGINT NOT NULL, \
                 total_cents BIGINT NOT NULL, PRIMARY KEY (customer, status))",
    },
    Table {
        name: "order_status",
        create: "CREATE TABLE {table} (order_id TEXT PRIMARY KEY, customer TEXT NOT NULL, status TEXT NOT NULL, \
                 total_cents BIGINT NOT NULL)",
    },
];

/// A status as the read model spells it.
pub(crate) fn status(status: Status) -> &'static str {
    match status {
        Status::New => "new",
        Status::Placed => "placed",
        Status::Paid => "paid",
        Status::Shipped => "shipped",
        Status::Cancelled => "cancelled",
    }
}

impl Projection<SqliteProjections> for OrderSummary {
    fn name(&self) -> &str {
        "order_summary"
    }

    fn event_types(&self) -> &[&str] {
        &["order.placed", "order.paid", "order.shipped", "order.cancelled"]
    }

    fn tables(&self) -> &[Table] {
        &TABLES
    }

    fn apply<'a>(&'a self, event: &'a StoredEvent, tx: &'a mut Transaction<'static, Sqlite>) -> ApplyFuture<'a> {
        Box::pin(async move {
            let event = OrderEvent::from_envelope(&event.event_type, &event.payload)
                .ok_or_else(|| format!("{} is not an order event", event.event_type))?
                .map_err(|e| e.to_string())?;
            let (order_id, to) = match &event {
                OrderEvent::Placed(placed) => {
                    let (customer, total) = (&placed.customer, placed.total_cents as i64);
                    let insert = format!(
                        "INSERT INTO {} (order_id, customer, status, total_cents) VALUES (?, ?, 'placed', ?)",
                        versioned("order_status", 1)
                    );
                    sqlx::query(sqlx::AssertSqlSafe(insert))
                        .bind(&placed.order_id)
                        .bind(customer)
                        .bind(total)
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| e.to_string())?;
                    return add(tx, customer, "placed", 1, total).await;
                }
                OrderEvent::Paid(paid) => (&paid.order_id, Status::Paid),
                OrderEvent::Shipped(shipped) => (&shipped.order_id, Status::Shipped),
                OrderEvent::Cancelled(cancelled) => (&cancelled.order_id, Status::Cancelled),
            };
            move_order(tx, order_id, status(to)).await
        })
    }
}

/// Moves an order from its current status's summary row to `to`'s.
async fn move_order(tx: &mut Transaction<'static, Sqlite>, order_id: &str, to: &str) -> Result<(), String> {
    let table = versioned("order_status", 1);
    let select = format!("SELECT customer, status, total_cents FROM {table} WHERE order_id = ?");
    let (customer, from, total): (String, String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(select))
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("order {order_id} changed status before it was placed"))?;
    let update = format!("UPDATE {table} SET status = ? WHERE order_id = ?");
    sqlx::query(sqlx::AssertSqlSafe(update))
        .bind(to)
        .bind(order_id)
        .execute(&mut **tx)
        .await
        .map_err(|e| e.to_string())?;
    add(tx, &customer, &from, -1, -total).await?;
    add(tx, &customer, to, 1, total).await
}

/// Adds `orders` and `total` to the summary row of `customer` and `status`.
async fn add(
    tx: &mut Transaction<'static, Sqlite>,
    customer: &str,
    status: &str,
    orders: i64,
    total: i64,
) -> Result<(), String> {
    let table = versioned("order_summary", 1);
    let upsert = format!(
        "INSERT INTO {table} (customer, status, orders, total_cents) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (customer, status) DO UPDATE SET orders = {table}.orders + ?3, \
         total_cents = {table}.total_cents + ?4"
    );
    sqlx::query(sqlx::AssertSqlSafe(upsert))
        .bind(customer)
        .bind(status)
        .bind(orders)
        .bind(total)
        .execute(&mut **tx)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
