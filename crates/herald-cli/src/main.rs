//! `herald`: run a Herald broker (`herald serve`), and (growing) tools for any
//! Kafka-compatible cluster. It refuses to guess: bad settings are one clear error line
//! and a non-zero exit. Its key choice is one settings path for every command: flags,
//! then `HERALD_*` environment variables, then an optional TOML file, then defaults.

mod bench;
mod cluster;
mod console_source;
mod consume;
mod database;
mod dlq;
mod groups;
mod outbox;
mod produce;
mod projections;
mod sagas;
mod schemas;
mod serve;
mod store;
mod topics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Herald: an event-driven platform on the Kafka protocol")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker: Kafka clients connect to --listen (127.0.0.1:9092 by default).
    Serve(Box<serve::ServeArgs>),
    /// Measure a Kafka-compatible broker: produce or consume as fast as it allows.
    Bench(bench::BenchArgs),
    /// Topics: list, create, describe, delete, alter (on Herald or any Kafka cluster).
    Topics(topics::TopicsArgs),
    /// Send lines of standard input as records (optionally keyed, optionally in the envelope).
    Produce(produce::ProduceArgs),
    /// Print a topic's records as they arrive.
    Consume(consume::ConsumeArgs),
    /// Consumer groups: list, describe (members, lag), reset-offsets, delete.
    Groups(groups::GroupsArgs),
    /// Dead letters: list them, redrive them to their original topics.
    Dlq(dlq::DlqArgs),
    /// Print a shell completion script, e.g. `herald completions bash > /etc/bash_completion.d/herald`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Transactional outbox tools: `herald outbox relay --database-url ...`.
    Outbox(outbox::OutboxArgs),
    /// A service's event store: `herald store streams | read <stream> | stats --database-url ...`.
    Store(store::StoreArgs),
    /// A service's projections: `herald projections list | status | rebuild | reset | retry | skip --database-url ...`.
    Projections(projections::ProjectionsArgs),
    /// A service's sagas: `herald sagas list [--state S] | show <id> --database-url ...`.
    Sagas(sagas::SagasArgs),
    /// A schema registry (Herald's or Confluent's): `herald schemas list | get | register | check | config`.
    Schemas(schemas::SchemasArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Outbox(args) => outbox::run(args),
        Command::Store(args) => store::run(args),
        Command::Projections(args) => projections::run(args),
        Command::Sagas(args) => sagas::run(args),
        Command::Schemas(args) => schemas::run(args),
        Command::Topics(args) => topics::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Groups(args) => groups::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "herald",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}
