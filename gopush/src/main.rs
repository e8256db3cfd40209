//! The `gopush` binary. The roles arrive with the comet, message and web crates; until then it
//! says so and exits non-zero rather than pretending to serve.

fn main() {
    eprintln!("gopush: the server roles are not built yet (see the open issues)");
    std::process::exit(2);
}
