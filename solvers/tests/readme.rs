//! The README's "Solvers" table is the registry rendered as markdown
//! ([`solvers_markdown_table`]): this test fails when they differ.
//!
//! Regenerate the README section with
//! `UPDATE_README=1 cargo test -p scoresde-solvers --test readme`.

use std::path::PathBuf;

use scoresde_solvers::{solvers_markdown_table, x0_guard_note, SOLVERS};

const BEGIN: &str = "<!-- solvers-table: generated from solvers/src/registry.rs -->\n";
const END: &str = "<!-- /solvers-table -->\n";

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("README.md")
}

/// The README between the markers, and the text around it.
fn split(readme: &str) -> (&str, &str, &str) {
    let a = readme.find(BEGIN).expect("README.md has the solvers-table begin marker") + BEGIN.len();
    let b = a + readme[a..].find(END).expect("README.md has the solvers-table end marker");
    (&readme[..a], &readme[a..b], &readme[b..])
}

#[test]
fn readme_solvers_table_is_the_registry() {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let (head, current, tail) = split(&readme);
    let table = solvers_markdown_table();
    assert_eq!(table.lines().count(), SOLVERS.len() + 2, "one row per solver plus the header");
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, format!("{head}{table}{tail}")).expect("write README.md");
        eprintln!("rewrote the solvers table in {}", path.display());
        return;
    }
    if current != table {
        let first = current.lines().zip(table.lines()).position(|(a, b)| a != b);
        let detail = match first {
            Some(i) => format!(
                "first difference, line {}:\n  README:   {}\n  registry: {}",
                i + 1,
                current.lines().nth(i).unwrap_or(""),
                table.lines().nth(i).unwrap_or("")
            ),
            None => format!("README has {} lines, the registry {}", current.lines().count(), table.lines().count()),
        };
        panic!(
            "README.md's solvers table differs from solvers/src/registry.rs ({detail}).\n\
             Regenerate it: UPDATE_README=1 cargo test -p scoresde-solvers --test readme"
        );
    }
}

/// The README states the x0 guard syntax and its solvers as the registry does.
#[test]
fn readme_states_the_x0_guard_note() {
    let readme = std::fs::read_to_string(readme_path()).expect("read README.md");
    let note = x0_guard_note();
    assert!(readme.lines().any(|l| l == note), "README.md lacks this line (copy it below the solvers table):\n{note}");
}
