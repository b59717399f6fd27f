//! The README's quick start is `examples/quickstart.rs`, which CI builds: a test keeps the two
//! the same, so the README cannot show a program that does not compile.

#[test]
fn the_quick_start_is_the_example_verbatim() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/quickstart.rs")).unwrap();
    // The example's code, from its first `use` (its doc line stays out of the README).
    let code = &example[example.find("use ").expect("the example has code")..];
    let block = format!("```rust\n{code}```");
    assert!(
        readme.contains(&block),
        "README.md's quick start differs from examples/quickstart.rs; paste this block:\n{block}"
    );
}

#[test]
fn the_readme_links_point_at_files_that_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    for link in readme.split("](").skip(1) {
        let target = &link[..link.find(')').unwrap()];
        if target.starts_with('#') || target.contains("://") {
            continue;
        }
        // A link into a section of another file checks the file.
        let target = target.split('#').next().unwrap_or(target);
        assert!(
            std::path::Path::new(root).join(target).exists(),
            "README.md links to {target}, which does not exist"
        );
    }
}
