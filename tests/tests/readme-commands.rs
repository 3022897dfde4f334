//! The README's test command and `.ci/run` are the same command, so CI runs what the README
//! promises; and the README starts with exactly two commands.

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = include_str!("../../README.md");
    let ci = include_str!("../../.ci/run");
    let commands: Vec<&str> = readme
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim())
        .collect();
    assert!(
        commands.len() >= 2,
        "the README must start with the run and test commands"
    );
    assert!(
        commands[0].contains("duet -- up"),
        "first command runs duet up: {}",
        commands[0]
    );
    let test_command = commands[1];
    assert!(
        ci.lines().any(|l| l.trim() == test_command),
        ".ci/run must run the README's test command `{test_command}`"
    );
    // Both commands use the install script that is in the repository.
    assert!(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/install-deps.sh"
        ))
        .exists()
    );
}
