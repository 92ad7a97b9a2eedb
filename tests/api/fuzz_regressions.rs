//! Replays what fuzzing kept: the committed corpus of every target (`fuzz/corpus/<target>`)
//! and each crash it ever found (`fuzz/regressions/<target>`), through the same entry point
//! the fuzzer calls. CI has no time for hours of fuzzing; this makes those hours count on
//! every build, with debug assertions and overflow checks on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use diarysync::partners::fuzzing::{TARGETS, run};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_fuzz_input_maps_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for target in TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{target} is empty: run `bash scripts/fuzz {target}` and commit it"
        );
        let regressions = inputs(&root.join("regressions").join(target));
        for path in corpus.iter().chain(&regressions) {
            let input = match std::fs::read(path) {
                Ok(input) => input,
                Err(error) => panic!("{}: {error}", path.display()),
            };
            if catch_unwind(AssertUnwindSafe(|| run(target, &input))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}

#[test]
fn every_kept_delivery_goes_through_the_store_without_our_own_failure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let kept: Vec<PathBuf> = ["corpus/delivery", "seeds/delivery", "regressions/delivery"]
        .iter()
        .flat_map(|dir| inputs(&root.join(dir)))
        .collect();
    assert!(
        inputs(&root.join("seeds/delivery")).len() >= 10,
        "fuzz/seeds/delivery holds the extreme times every run replays"
    );
    let mut failures = Vec::new();
    for path in &kept {
        let input = match std::fs::read(path) {
            Ok(input) => input,
            Err(error) => panic!("{}: {error}", path.display()),
        };
        if catch_unwind(AssertUnwindSafe(|| {
            diarysync::gateway::fuzzing::deliver(&input);
        }))
        .is_err()
        {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "deliveries that failed on our side: {failures:#?}"
    );
}
