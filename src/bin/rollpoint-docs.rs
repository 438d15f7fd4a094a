//! rollpoint-docs OUT_DIR: writes the man pages and shell completions the
//! Debian package ships (see `rollpoint::docs`). A build tool; not shipped.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: rollpoint-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match rollpoint::docs::generate(&PathBuf::from(out)) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("rollpoint-docs: {error}");
            ExitCode::FAILURE
        }
    }
}
