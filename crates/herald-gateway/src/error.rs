//! Why the gateway did not start.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The address could not be bound.
    #[error("listening for HTTP on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A non-loopback address without tokens.
    #[error(
        "refusing to serve HTTP on {0} without tokens: give --http-token-file, listen on a loopback address, \
         or pass --http-insecure"
    )]
    Insecure(SocketAddr),
    /// The token file could not be read.
    #[error("reading the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The token file is not valid.
    #[error("the token file {path}: {reason}")]
    Tokens {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
