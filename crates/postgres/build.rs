// The migrations are embedded at compile time; a new one must rebuild this crate.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
