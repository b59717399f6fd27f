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

#[test]
fn the_readme_names_every_cargo_feature() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    let features = &manifest[manifest.find("[features]").unwrap()..];
    let features = &features[..features[1..]
        .find("\n[")
        .map_or(features.len(), |end| end + 1)];
    let names: Vec<&str> = features
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(" = ").map(|(name, _)| name.trim()))
        .filter(|name| *name != "default")
        .collect();
    assert!(
        names.len() >= 10,
        "the features read from Cargo.toml: {names:?}"
    );
    for name in names {
        assert!(
            readme.contains(&format!("| `{name}`")),
            "README.md's table of what is built in has no row for the feature `{name}`"
        );
    }
}

#[test]
fn the_readme_points_at_nothing_outside_the_repository() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    // A path dependency on the user's checkout of the crate is theirs, not ours.
    let outside = readme
        .lines()
        .find(|line| line.contains("../") && !line.contains("path = \"../tower-webhook\""));
    assert!(
        outside.is_none(),
        "README.md names a path outside the repository: {outside:?}"
    );
    let issue = readme.match_indices('#').find(|(at, _)| {
        readme[at + 1..].starts_with(|c: char| c.is_ascii_digit())
            && !readme[..*at].ends_with(|c: char| c.is_alphanumeric())
    });
    assert!(
        issue.is_none(),
        "README.md cites an issue number: {}",
        &readme[issue.unwrap().0..][..8]
    );
}
