use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("rollpoint_descriptor.bin"))
        // Variables in name order, in replies and in --json alike.
        .btree_map(".rollpoint.v1.Entry.environment")
        .compile_protos(&["proto/rollpoint/v1/rollpoint.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
