use std::process::ExitCode;

fn main() -> ExitCode {
    offramp::cli::main()
}
