//! `rotationd audit --verify --anchors`: the anchors the daemon wrote to S3 (`[audit]
//! anchor_bucket`, `crate::store::anchor`) read back (`ListObjectsV2` under the prefix,
//! `GetObject` of each), for the local chain to be checked against them.
//!
//! They are read *before* the state is opened, so every anchor names an entry that
//! existed when the log is read: one written while this runs cannot look like a
//! truncation.

use futures_util::StreamExt;

use super::CliError;
use crate::config::{AnchorConfig, Config};
use crate::store::anchor::{Anchor, AnchorCheck, MAX_ANCHOR_BYTES};

/// How many anchors are fetched at once: a year of hourly anchors is ~9,000 objects.
const FETCH_CONCURRENCY: usize = 16;

/// The anchors read, and the objects under the prefix that were not anchors.
pub struct Fetched {
    /// (entry id, hash, anchored at), from objects whose body agrees with their key.
    pub anchors: Vec<(i64, String, chrono::DateTime<chrono::Utc>)>,
    /// Objects under the prefix that are anchors in name but whose body is not what the
    /// key says (altered) or cannot be read as one: each is a failure.
    pub bad: Vec<String>,
    /// Keys under the prefix of another form: not rotationd's, ignored.
    pub foreign: Vec<String>,
}

/// The configured anchors, or why `--anchors` cannot run.
pub fn anchor_config(cfg: &Config) -> Result<&AnchorConfig, CliError> {
    cfg.audit.anchor.as_ref().ok_or_else(|| {
        CliError::Invalid(
            "--anchors needs [audit] anchor_bucket in the configuration: the S3 bucket the daemon anchors the audit log in".into(),
        )
    })
}

/// Every anchor under the prefix, read with the daemon's AWS settings (`[aws]`).
pub fn fetch(cfg: &Config, anchors: &AnchorConfig) -> Result<Fetched, CliError> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let sdk = crate::aws::load_sdk_config(&cfg.aws).await;
        // Counted like every client, into a registry nobody serves: a CLI run.
        let counter = crate::aws::RequestCounter::new(Default::default());
        let bucket = crate::aws::s3::Bucket::new(&sdk, &counter, &anchors.bucket);
        let keys = bucket.list_keys(&anchors.prefix).await.map_err(|e| {
            CliError::Failed(format!(
                "cannot list the anchors in s3://{}/{}: {e}",
                anchors.bucket, anchors.prefix
            ))
        })?;
        let (named, foreign): (Vec<String>, Vec<String>) = keys
            .into_iter()
            .partition(|k| Anchor::parse_key(&anchors.prefix, k).is_some());
        let bodies: Vec<(String, Result<Vec<u8>, crate::aws::AwsError>)> =
            futures_util::stream::iter(named)
                .map(|key| {
                    let bucket = bucket.clone();
                    async move {
                        let body = bucket.get(&key, MAX_ANCHOR_BYTES).await;
                        (key, body)
                    }
                })
                .buffered(FETCH_CONCURRENCY)
                .collect()
                .await;
        let mut out = Fetched {
            anchors: Vec::new(),
            bad: Vec::new(),
            foreign,
        };
        for (key, body) in bodies {
            let body = body.map_err(|e| {
                CliError::Failed(format!(
                    "cannot read anchor s3://{}/{key}: {e}",
                    anchors.bucket
                ))
            })?;
            match Anchor::from_object(&anchors.prefix, &key, &body) {
                Ok(a) => out.anchors.push((a.entry_id, a.hash, a.anchored_at)),
                Err(why) => out.bad.push(why),
            }
        }
        Ok(out)
    })
}

/// The most faults printed one by one; the rest are counted.
const SHOWN_FAULTS: usize = 10;

/// The verdict on `check` of `fetched`: the line to print, or the failure.
pub fn verdict(
    anchors: &AnchorConfig,
    fetched: &Fetched,
    check: &AnchorCheck,
    entries: u64,
) -> Result<String, CliError> {
    let place = format!("s3://{}/{}", anchors.bucket, anchors.prefix);
    let mut problems: Vec<String> = fetched.bad.clone();
    problems.extend(check.faults.iter().map(|f| f.to_string()));
    if !problems.is_empty() {
        let total = problems.len();
        let mut lines: Vec<String> = problems.into_iter().take(SHOWN_FAULTS).collect();
        if total > SHOWN_FAULTS {
            lines.push(format!("and {} more", total - SHOWN_FAULTS));
        }
        return Err(CliError::Failed(format!(
            "audit log tampered: it does not hold {total} of the {} anchors in {place}:\n  {}\nkeep a copy of the state database for investigation and compare it with a backup",
            fetched.anchors.len() + fetched.bad.len(),
            lines.join("\n  ")
        )));
    }
    if fetched.anchors.is_empty() && entries > 0 {
        return Err(CliError::Failed(format!(
            "no anchors in {place}, so nothing outside this host vouches for the log; check that the daemon runs with this [audit] anchor_bucket and anchor_prefix and can write there (rotationd_audit_anchors_total)"
        )));
    }
    let mut line = format!("anchors OK: {} anchors in {place} checked", check.held);
    if let Some(n) = check.newest {
        line.push_str(&format!(", the newest at entry {n}"));
    }
    if check.pruned > 0 {
        line.push_str(&format!(
            "; {} more below the pruning checkpoint (entries pruned after [state] audit_retention) could not be compared",
            check.pruned
        ));
    }
    Ok(line)
}
