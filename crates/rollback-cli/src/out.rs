//! Writing results to stdout. A closed stdout (`rollback audit show F |
//! head`) ends the process quietly with 141, as a shell reports a process
//! that SIGPIPE ended, instead of a panic.

use std::io::Write as _;

/// Write `text` to stdout, flushed.
pub fn write(text: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(text)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(141);
    }
}

/// `println!` to stdout through [`write()`].
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::out::write(format_args!($($t)*), true) };
}

/// `print!` to stdout through [`write()`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::out::write(format_args!($($t)*), false) };
}
