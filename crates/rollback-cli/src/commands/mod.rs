//! One module per subcommand.

pub mod audit;
pub mod check;
pub mod history;
pub mod lab;
pub mod replay;
pub mod status;
pub mod undo;
pub mod watch;
