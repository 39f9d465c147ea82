//! herald-log's integration tests, in one binary (faster to link, one place to look).

mod basics;
mod codecs;
mod common;
mod crash_sim;
mod faults;
mod model;
mod process_crash;
mod torn_tail;
