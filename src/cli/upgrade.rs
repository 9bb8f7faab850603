//! `crema upgrade IN OUT`: a net or solver file, text or binary, to the current format.

use anyhow::Context;
use crema::upgrade::{self, Encoding};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The file to upgrade: a net (.prototxt or .caffemodel) or a solver.
    input: PathBuf,
    /// Where to write it: text when it ends in .prototxt or .txt, binary otherwise.
    output: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let text_out = matches!(
        a.output.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("prototxt") | Some("txt")
    );
    let encoding = if text_out { Encoding::Text } else { Encoding::Binary };
    // A file is a solver when it parses as one and not as a net (solver fields are unknown
    // to NetParameter and the other way round).
    match upgrade::load_net(&a.input) {
        Ok(net) => {
            upgrade::write_net(&a.output, &net.message, encoding)?;
            report(&a, &net.notes);
        }
        Err(net_err) => match upgrade::load_solver(&a.input) {
            Ok(solver) => {
                upgrade::write_solver(&a.output, &solver.message, encoding)?;
                report(&a, &solver.notes);
            }
            Err(_) => return Err(net_err).with_context(|| format!("{} is neither a net nor a solver", a.input.display())),
        },
    }
    Ok(())
}

fn report(a: &Args, notes: &[String]) {
    if notes.is_empty() {
        eprintln!("{}: already in the current format; written to {}", a.input.display(), a.output.display());
    } else {
        for n in notes {
            eprintln!("{}: {n}", a.input.display());
        }
        eprintln!("wrote {}", a.output.display());
    }
}
