//! The README's supported-families table is generated from the registry; this test fails when they
//! drift apart and prints the table to paste.

use moescope::model::registry::markdown_table;

#[test]
fn readme_families_table_matches_registry() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = "<!-- families:start -->\n";
    let end = "<!-- families:end -->";
    let from = readme
        .find(start)
        .expect("README has the families start marker")
        + start.len();
    let to = readme
        .find(end)
        .expect("README has the families end marker");
    let expected = markdown_table();
    assert_eq!(
        &readme[from..to],
        expected,
        "README families table is stale; replace it with:\n{expected}"
    );
}
