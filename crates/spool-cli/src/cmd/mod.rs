//! One module per subcommand.

/// `println!` that returns the write error instead of panicking, so output piped into a
/// reader that stops early (`| head`) ends the command quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

pub mod bench;
pub mod broker;
pub mod common;
pub mod consume;
pub mod demo;
pub mod groups;
pub mod produce;
pub mod signal;
pub mod topics;
