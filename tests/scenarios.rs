//! Every scenario of the process library holds (docs/simulation.md).

use duban_engine::calendar::Calendar;
use duban_engine::simulate::Scenario;
use duban_tests::{processes, yaml_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_library_scenario_passes() {
    let files: Vec<_> = yaml_files(&processes().join("scenarios"))
        .into_iter()
        .filter(|f| !f.ends_with("directory.yaml"))
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let sc = Scenario::read(&f).unwrap_or_else(|e| panic!("{e}"));
        let report = sc
            .run(None, None, Calendar::builtin())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let failed: Vec<_> = report.checks.iter().filter(|c| c.found.is_some()).collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", f.display());
        assert!(!report.checks.is_empty(), "{} checks nothing", f.display());
    }
}
