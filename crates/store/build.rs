//! `sqlx::migrate!` embeds the migration files at compile time, but cargo does not know
//! about them: without this, an incremental build after adding a migration kept the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
