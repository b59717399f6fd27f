//! Writes signed deliveries into `fuzz/corpus/<target>/`, the corpora `cargo fuzz run` starts
//! from: without them the fuzzer would almost never reach a valid signature.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut written = 0;
    for (n, (target, input)) in tower_webhook_fuzz::seeds().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{n:03}")), input)?;
        written += 1;
    }
    println!("wrote {written} seeds under {}", root.display());
    Ok(())
}
