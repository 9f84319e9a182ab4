//! kill -9, for real: the `offramp` binary runs a pipeline against the mock SaaS as a child
//! process and is SIGKILLed at random points, then started again (`offramp recover`) until the
//! run ends. Checked against the mock's own request log: the run finishes, no step recorded as
//! finished was executed again after that, and no result row is lost.
//!
//! Seeded: the seed is printed, and `OFFRAMP_CRASH_SEED=N` replays a failure.
//! `OFFRAMP_CRASH_ITERATIONS` (default 12) sets how many runs are put through it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offramp::store::{RunStatus, StepStatus, Store};
use offramp_mock::MockServer;

const STEPS: [&str; 6] = ["find", "suspend", "sessions", "tokens", "groups", "deactivate"];
/// The lease the child processes use: after a kill, the next process waits this long.
const LEASE: Duration = Duration::from_millis(400);

/// splitmix64: small, seedable, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Six steps, two of them in parallel, each a slow POST (200 ms) to its own path on the mock.
fn pipeline(dir: &Path) -> PathBuf {
    let step = |id: &str, needs: &str| {
        format!(
            "  - id: {id}\n    uses: http\n{needs}    with:\n      method: POST\n      url: \"{{{{ vars.base }}}}/__echo/{{{{ run.id }}}}/{id}?delay_ms=200\"\n      json: {{ user: \"{{{{ inputs.email }}}}\" }}\n    allow: [\"{{{{ vars.base }}}}\"]\n"
        )
    };
    let mut yaml = String::from(
        "version: 1\nname: crash\nvars: { base: \"http://127.0.0.1:9\" }\ninputs: { email: { type: email, required: true } }\nsteps:\n",
    );
    yaml += &step("find", "");
    yaml += &step("suspend", "    needs: [find]\n");
    yaml += &step("sessions", "    needs: [suspend]\n");
    yaml += &step("tokens", "    needs: [suspend]\n");
    yaml += &step("groups", "    needs: [sessions, tokens]\n");
    yaml += &step("deactivate", "    needs: [groups]\n");
    let path = dir.join("crash.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// What the database said right after a kill, and how long the mock's log was then.
struct Kill {
    finished: BTreeSet<String>,
    log_len: usize,
}

#[test]
fn runs_survive_sigkill_at_random_points() {
    let seed: u64 =
        std::env::var("OFFRAMP_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0FF_4A3D_2026_1128);
    let iterations: u32 = std::env::var("OFFRAMP_CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    eprintln!("crash test: seed {seed} (replay with OFFRAMP_CRASH_SEED={seed}), {iterations} runs");
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mock = rt.block_on(MockServer::start("unused-token")).unwrap();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offramp-component-cache");
    let (mut total_kills, mut mid_run) = (0, 0);

    for iteration in 0..iterations {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("crash.db").display());
        let pipeline = pipeline(dir.path());
        let store: Arc<dyn Store> = rt.block_on(offramp::store::open(&db)).unwrap();
        let run_id = || rt.block_on(store.runs(5)).unwrap().first().map(|r| r.id.clone());
        let mut kills: Vec<Kill> = Vec::new();
        let mut rounds = 0;
        let run = loop {
            rounds += 1;
            assert!(rounds <= 60, "iteration {iteration}: the run did not finish after {rounds} processes");
            let started = run_id();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_offramp"));
            cmd.env("OFFRAMP_ALLOW_PRIVATE", "127.0.0.1");
            match &started {
                // Nothing recorded yet (killed before the run was created): start it again.
                None => cmd
                    .args(["run", &pipeline.display().to_string(), "--json", "-i", "email=alice@example.com"])
                    .args(["--var".to_string(), format!("base={}", mock.url())]),
                // The run carries its plan: `recover` needs nothing else.
                Some(_) => cmd.args(["recover", "--json"]),
            };
            cmd.env("DATABASE_URL", &db)
                .env("OFFRAMP_LEASE", format!("{}ms", LEASE.as_millis()))
                .env("OFFRAMP_CACHE_DIR", &cache)
                .env_remove("OFFRAMP_PLUGINS_DIR")
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().unwrap();
            // Anywhere from before the process is up to after the run would have ended.
            let kill_at = Instant::now() + Duration::from_millis(rng.below(1_600));
            let exited = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() >= kill_at {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            if exited.is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                total_kills += 1;
                let finished = match run_id() {
                    Some(id) => rt
                        .block_on(store.steps(&id))
                        .unwrap()
                        .into_iter()
                        .filter(|s| s.status.is_finished())
                        .map(|s| s.step_id)
                        .collect(),
                    None => BTreeSet::new(),
                };
                if !finished.is_empty() && finished.len() < STEPS.len() {
                    mid_run += 1;
                }
                kills.push(Kill { finished, log_len: mock.state.requests().len() });
            }
            if let Some(id) = run_id() {
                let run = rt.block_on(store.run(&id)).unwrap();
                if run.status.is_finished() {
                    break run;
                }
            }
            if exited.is_none() {
                // The killed process's lease must run out before another may take the run.
                std::thread::sleep(LEASE + Duration::from_millis(50));
            }
        };

        let context = format!("seed {seed}, iteration {iteration}, run {}", run.id);
        assert_eq!(run.status, RunStatus::Succeeded, "{context}");
        assert_eq!(run.lease, None, "{context}: a finished run is nobody's");
        let steps = rt.block_on(store.steps(&run.id)).unwrap();
        assert_eq!(steps.len(), STEPS.len(), "{context}: a result row per step");
        let log = mock.state.requests();
        let path = |step: &str| format!("/__echo/{}/{step}", run.id);
        for s in &steps {
            assert_eq!(s.status, StepStatus::Succeeded, "{context}: {}", s.step_id);
            // The result row holds what the mock answered to this step's own request.
            let output = s.output.as_ref().unwrap_or_else(|| panic!("{context}: {} has no output", s.step_id));
            assert_eq!(output["body"]["path"], path(&s.step_id).as_str(), "{context}");
            let answered = log.iter().filter(|r| r.path == path(&s.step_id) && r.status == 200).count();
            assert!(answered >= 1, "{context}: the mock never answered {}", s.step_id);
            assert!(s.attempts >= 1 && s.finished_at.is_some(), "{context}: {}", s.step_id);
        }
        // No step that the database had as finished when a process died ran again later.
        for (k, kill) in kills.iter().enumerate() {
            for step in &kill.finished {
                let again = log[kill.log_len..].iter().filter(|r| r.path == path(step)).count();
                assert_eq!(again, 0, "{context}: `{step}` was finished at kill {k} but the mock got it again");
            }
        }
        // One `step_finished` per step: no result lost or written twice.
        let events = rt.block_on(store.events(&run.id)).unwrap();
        let finished: BTreeMap<String, usize> =
            events.iter().filter(|e| e.kind == "step_finished").fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e.step_id.clone().unwrap_or_default()).or_default() += 1;
                m
            });
        assert_eq!(finished.len(), STEPS.len(), "{context}: {finished:?}");
        assert!(finished.values().all(|&n| n == 1), "{context}: {finished:?}");
        eprintln!("iteration {iteration}: {} kill(s), {} process(es), run succeeded", kills.len(), rounds);
    }
    eprintln!("{total_kills} kills, {mid_run} of them with the run part done");
    assert!(mid_run >= iterations / 2, "too few kills landed mid-run ({mid_run} of {total_kills}) to mean much");
}
