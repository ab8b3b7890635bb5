//! One module per subcommand.

pub mod broker;
pub mod common;
pub mod consume;
pub mod demo;
pub mod groups;
pub mod produce;
pub mod signal;
pub mod topics;
