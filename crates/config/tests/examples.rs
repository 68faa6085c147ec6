//! Every file in examples/ must load cleanly: they are what users copy.

use std::path::PathBuf;

use switchyard_config::Config;

#[test]
fn every_example_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 4,
        "expected the example configs in {}",
        dir.display()
    );
    for path in &paths {
        // No environment: examples must load with their defaults alone.
        if let Err(errs) = Config::load_with_env(path, |_| None) {
            panic!("{} does not load:\n{errs}", path.display());
        }
    }
}

#[test]
fn resilient_example_shows_every_strategy() {
    use switchyard_config::Strategy;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/resilient.yaml");
    let c = Config::load_with_env(&path, |_| None).unwrap();
    for s in [
        Strategy::Fallback,
        Strategy::Weighted,
        Strategy::Cheapest,
        Strategy::Fastest,
        Strategy::LeastBusy,
    ] {
        assert!(c.models.iter().any(|m| m.strategy == s), "{s:?} not shown");
    }
    assert!(c.models.iter().any(|m| m.hedge.is_some()));
}
