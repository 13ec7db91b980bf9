// `sqlx::migrate!` embeds the migrations when cassa compiles: a new or changed migration
// must rebuild it (as `sqlx migrate build-script` sets up).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
