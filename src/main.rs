//! The `crema` command: Caffe's tools (`caffe train`, `caffe test`, `caffe time`,
//! `upgrade_net_proto_text`, ...) with Caffe's flags, plus crema's own.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
