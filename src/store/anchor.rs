//! Anchors of the audit log: its chain head (entry id, hash, time) written outside this
//! host, in an S3 bucket under Object Lock in compliance mode (`daemon::anchor` writes
//! them, `rotationd audit --verify --anchors` reads them), and the check of the local
//! chain against them.
//!
//! # What an anchor proves
//!
//! Each row's hash covers the row before it (`audit`), so an intact chain whose row N
//! still has the hash anchored for N has every row up to N as it was when anchored. What
//! the chain alone cannot show, an anchor does:
//!
//! - a **truncated tail**: an anchor names an entry id beyond the local head;
//! - a **rewritten tail** (rows replaced and re-hashed from some point on, a whole new
//!   file): the local row at an anchor's id has another hash, or is gone.
//!
//! Entries written after the newest anchor are covered by none (at most `[audit]
//! anchor_every` of them, or none after a clean shutdown, which anchors too).
//!
//! # Pruning
//!
//! `store::upkeep` deletes rows below a checkpoint (the last pruned row's id and hash).
//! An anchor at a checkpoint's id is checked against that checkpoint's hash; one below the
//! newest checkpoint otherwise names a row that is gone for good, so it can only be
//! counted as pruned, not checked. An attacker could try to pass a rewrite off as pruning
//! (a forged checkpoint above the anchors), so the newest anchor must always be checkable:
//! the daemon anchors within `anchor_every` of any pruning, which deletes only entries
//! older than `[state] audit_retention`, so a newest anchor at or below a checkpoint means
//! the checkpoint is not what rotationd wrote.
//!
//! # The object
//!
//! The key names the anchor, `PREFIX` + the entry id (20 digits, so S3's lexicographic
//! listing is id order) + `-` + the hash + `.json`; the body is a small JSON document that
//! must say the same and adds the times and the writer. The daemon's credentials may write
//! objects (a new version of a key hides an older one from `ListObjectsV2`), so what
//! counts is the key, which no one can take back: a body that disagrees with its key is
//! reported as altered.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use super::{Db, StoreResult, Ts, query};

/// The `format` of every anchor body: a later encoding gets a new tag.
pub const ANCHOR_FORMAT: &str = "rotationd-audit-anchor-v1";

/// An anchor's body is a few hundred bytes; anything much larger is not one.
pub const MAX_ANCHOR_BYTES: usize = 4096;

/// One anchored chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub format: String,
    /// The head entry's id and hash, and its time.
    pub entry_id: i64,
    pub hash: String,
    pub entry_at: DateTime<Utc>,
    /// When the anchor was written, and by which instance (`daemon::instance_id`).
    pub anchored_at: DateTime<Utc>,
    pub instance: String,
}

impl Anchor {
    /// The anchor of `head` (`Db::audit_anchor_head`), written now by `instance`.
    pub fn of(head: &ChainHead, anchored_at: DateTime<Utc>, instance: &str) -> Anchor {
        Anchor {
            format: ANCHOR_FORMAT.to_owned(),
            entry_id: head.id,
            hash: head.hash.clone(),
            entry_at: head.at,
            anchored_at,
            instance: instance.to_owned(),
        }
    }

    /// The object key under `prefix`.
    pub fn key(&self, prefix: &str) -> String {
        format!("{prefix}{:020}-{}.json", self.entry_id, self.hash)
    }

    /// The object body: compact JSON.
    pub fn body(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and times cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The entry id and hash a key under `prefix` names; `None` for a key of another
    /// form (not an anchor: left alone).
    pub fn parse_key(prefix: &str, key: &str) -> Option<(i64, String)> {
        let name = key.strip_prefix(prefix)?.strip_suffix(".json")?;
        let (id, hash) = name.split_once('-')?;
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if id.len() != 20 || !id.bytes().all(|b| b.is_ascii_digit()) || !hex(hash) {
            return None;
        }
        Some((id.parse().ok()?, hash.to_owned()))
    }

    /// The anchor stored at `key`: its body, which must name the same entry and hash as
    /// the key, or why not.
    pub fn from_object(prefix: &str, key: &str, body: &[u8]) -> Result<Anchor, String> {
        let (id, hash) = Anchor::parse_key(prefix, key)
            .ok_or_else(|| format!("{key} is not the key of an anchor"))?;
        let a: Anchor = serde_json::from_slice(body)
            .map_err(|e| format!("anchor {key} is not an anchor document ({e})"))?;
        if a.format != ANCHOR_FORMAT {
            return Err(format!(
                "anchor {key} has format `{}`, not {ANCHOR_FORMAT}; a newer rotationd may have written it",
                a.format
            ));
        }
        if a.entry_id != id || a.hash != hash {
            return Err(format!(
                "anchor {key} was altered: its body names entry {} with hash {}, its key entry {id} with hash {hash}",
                a.entry_id, a.hash
            ));
        }
        Ok(a)
    }
}

/// The chain's newest entry, as anchored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub id: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
}

/// Why the local chain does not hold an anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorFault {
    /// The anchor names an entry beyond the local head: the tail was truncated (or the
    /// file replaced by an older or another one).
    BeyondHead {
        anchor: i64,
        anchored_at: DateTime<Utc>,
        head: Option<i64>,
    },
    /// The local entry at the anchor's id has another hash: it, or a row before it, was
    /// rewritten.
    Rewritten {
        anchor: i64,
        anchored: String,
        local: String,
    },
    /// No local entry at the anchor's id, although it is above the pruning checkpoint and
    /// below the head: removed.
    Missing { anchor: i64 },
    /// A checkpoint at the anchor's id records another hash.
    CheckpointDiffers {
        anchor: i64,
        anchored: String,
        checkpoint: String,
    },
    /// The newest anchor is below the newest checkpoint without being one: the rows it
    /// vouches for are said to be pruned, which rotationd never does before anchoring
    /// after them.
    NewestPruned { anchor: i64, checkpoint: i64 },
}

impl std::fmt::Display for AnchorFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnchorFault::BeyondHead {
                anchor,
                anchored_at,
                head,
            } => write!(
                f,
                "truncated: the anchor of {} names entry {anchor}, but the local log ends at {}",
                anchored_at.format(crate::clock::TIME_FORMAT),
                head.map_or_else(|| "no entry".to_owned(), |h| format!("entry {h}"))
            ),
            AnchorFault::Rewritten {
                anchor,
                anchored,
                local,
            } => write!(
                f,
                "rewritten: entry {anchor} was anchored with hash {anchored}, the local entry has {local}"
            ),
            AnchorFault::Missing { anchor } => {
                write!(
                    f,
                    "removed: entry {anchor} was anchored and is no longer in the log"
                )
            }
            AnchorFault::CheckpointDiffers {
                anchor,
                anchored,
                checkpoint,
            } => write!(
                f,
                "rewritten: entry {anchor} was anchored with hash {anchored}, the pruning checkpoint there records {checkpoint}"
            ),
            AnchorFault::NewestPruned { anchor, checkpoint } => write!(
                f,
                "the newest anchor (entry {anchor}) is below the pruning checkpoint at entry {checkpoint}, which rotationd never prunes past before anchoring again: the checkpoint was forged or the anchors stopped long ago"
            ),
        }
    }
}

/// The result of [`Db::check_anchors`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorCheck {
    /// Anchors that the local chain (or a checkpoint) holds.
    pub held: u64,
    /// Anchors below the newest checkpoint, of rows pruned: not checkable.
    pub pruned: u64,
    /// The newest anchor's entry id.
    pub newest: Option<i64>,
    /// Every anchor the local chain does not hold, in id order.
    pub faults: Vec<AnchorFault>,
}

/// What the local store knows, for [`check`].
pub struct LocalChain<'a> {
    pub head: Option<i64>,
    /// Every checkpoint, `(upto_id, upto_hash)`.
    pub checkpoints: &'a [(i64, String)],
    /// The hash of the local entry `id`, if there is one.
    pub hash_of: &'a dyn Fn(i64) -> StoreResult<Option<String>>,
}

/// Judges `anchors` (any order) against `local`. Pure but for the row lookups.
pub fn check(
    anchors: &[(i64, String, DateTime<Utc>)],
    local: &LocalChain<'_>,
) -> StoreResult<AnchorCheck> {
    let floor = local.checkpoints.iter().map(|c| c.0).max();
    let mut sorted: Vec<&(i64, String, DateTime<Utc>)> = anchors.iter().collect();
    sorted.sort_by_key(|a| a.0);
    let mut out = AnchorCheck {
        newest: sorted.last().map(|a| a.0),
        ..AnchorCheck::default()
    };
    for (id, hash, anchored_at) in sorted {
        let (id, hash) = (*id, hash.clone());
        if local.head.is_none_or(|h| id > h) {
            out.faults.push(AnchorFault::BeyondHead {
                anchor: id,
                anchored_at: *anchored_at,
                head: local.head,
            });
            continue;
        }
        if floor.is_some_and(|f| id <= f) {
            match local.checkpoints.iter().find(|c| c.0 == id) {
                Some((_, h)) if *h == hash => out.held += 1,
                Some((_, h)) => out.faults.push(AnchorFault::CheckpointDiffers {
                    anchor: id,
                    anchored: hash,
                    checkpoint: h.clone(),
                }),
                None => out.pruned += 1,
            }
            continue;
        }
        match (local.hash_of)(id)? {
            Some(h) if h == hash => out.held += 1,
            Some(h) => out.faults.push(AnchorFault::Rewritten {
                anchor: id,
                anchored: hash,
                local: h,
            }),
            None => out.faults.push(AnchorFault::Missing { anchor: id }),
        }
    }
    if let (Some(newest), Some(floor)) = (out.newest, floor)
        && newest < floor
        && local.checkpoints.iter().all(|c| c.0 != newest)
    {
        out.faults.push(AnchorFault::NewestPruned {
            anchor: newest,
            checkpoint: floor,
        });
    }
    Ok(out)
}

impl Db<'_> {
    /// The chain's newest hashed entry, with its time: what an anchor records.
    pub fn audit_anchor_head(self) -> StoreResult<Option<ChainHead>> {
        self.conn
            .query_row(
                "SELECT id, hash, at FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(ChainHead {
                        id: r.get(0)?,
                        hash: r.get(1)?,
                        at: r.get::<_, Ts>(2)?.0,
                    })
                },
            )
            .optional()
            .map_err(query("read the audit log's head"))
    }

    /// Checks `anchors` (entry id, hash, anchored at) against the local chain and its
    /// checkpoints (see the module documentation). Read the anchors *before* calling:
    /// every anchor then names an entry that existed when this reads the log.
    pub fn check_anchors(
        self,
        anchors: &[(i64, String, DateTime<Utc>)],
    ) -> StoreResult<AnchorCheck> {
        let op = "check the audit log against its anchors";
        let head: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM audit", [], |r| r.get(0))
            .map_err(query(op))?;
        let checkpoints: Vec<(i64, String)> = self
            .conn
            .prepare("SELECT upto_id, upto_hash FROM audit_checkpoints ORDER BY id")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(query(op))?;
        let conn = self.conn;
        let hash_of = move |id: i64| -> StoreResult<Option<String>> {
            conn.prepare_cached("SELECT hash FROM audit WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row([id], |r| r.get::<_, Option<String>>(0))
                        .optional()
                })
                .map(Option::flatten)
                .map_err(query(op))
        };
        check(
            anchors,
            &LocalChain {
                head,
                checkpoints: &checkpoints,
                hash_of: &hash_of,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn h(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn t() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// Judges `anchors` against rows `rows` (id → hash) and `checkpoints`.
    fn judge(
        anchors: &[(i64, char)],
        rows: &[(i64, char)],
        checkpoints: &[(i64, char)],
    ) -> AnchorCheck {
        let rows: BTreeMap<i64, String> = rows.iter().map(|(i, c)| (*i, h(*c))).collect();
        let checkpoints: Vec<(i64, String)> =
            checkpoints.iter().map(|(i, c)| (*i, h(*c))).collect();
        let anchors: Vec<(i64, String, DateTime<Utc>)> =
            anchors.iter().map(|(i, c)| (*i, h(*c), t())).collect();
        let hash_of = |id: i64| Ok(rows.get(&id).cloned());
        check(
            &anchors,
            &LocalChain {
                head: rows.keys().next_back().copied(),
                checkpoints: &checkpoints,
                hash_of: &hash_of,
            },
        )
        .unwrap()
    }

    #[test]
    fn an_honest_log_holds_every_anchor() {
        let c = judge(
            &[(3, 'c'), (1, 'a')],
            &[(1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')],
            &[],
        );
        assert_eq!(
            c,
            AnchorCheck {
                held: 2,
                pruned: 0,
                newest: Some(3),
                faults: vec![],
            }
        );
    }

    #[test]
    fn a_truncated_tail_a_rewritten_row_and_a_removed_one_are_faults() {
        let c = judge(&[(5, 'e')], &[(1, 'a'), (2, 'b')], &[]);
        assert_eq!(
            c.faults,
            [AnchorFault::BeyondHead {
                anchor: 5,
                anchored_at: t(),
                head: Some(2)
            }]
        );
        assert!(
            c.faults[0]
                .to_string()
                .starts_with("truncated: the anchor of ")
        );
        let c = judge(&[(2, 'b')], &[(1, 'a'), (2, 'x'), (3, 'c')], &[]);
        assert_eq!(
            c.faults,
            [AnchorFault::Rewritten {
                anchor: 2,
                anchored: h('b'),
                local: h('x')
            }]
        );
        let c = judge(&[(2, 'b')], &[(1, 'a'), (3, 'c')], &[]);
        assert_eq!(c.faults, [AnchorFault::Missing { anchor: 2 }]);
        // An empty log (a replaced file) holds no anchor.
        let c = judge(&[(1, 'a')], &[], &[]);
        assert!(matches!(
            c.faults[..],
            [AnchorFault::BeyondHead { head: None, .. }]
        ));
    }

    #[test]
    fn anchors_below_the_checkpoint_are_counted_or_checked_against_it() {
        // Rows up to 10 pruned (checkpoint 10 'k'); anchors at 4 (gone), 10 (the
        // checkpoint's) and 12 (a row).
        let rows = [(11, 'l'), (12, 'm'), (13, 'n')];
        let c = judge(&[(4, 'd'), (10, 'k'), (12, 'm')], &rows, &[(10, 'k')]);
        assert_eq!((c.held, c.pruned, c.faults.len()), (2, 1, 0), "{c:?}");
        let c = judge(&[(10, 'z'), (12, 'm')], &rows, &[(10, 'k')]);
        assert_eq!(
            c.faults,
            [AnchorFault::CheckpointDiffers {
                anchor: 10,
                anchored: h('z'),
                checkpoint: h('k')
            }]
        );
        // A forged checkpoint above every anchor cannot pass a rewrite off as pruning.
        let c = judge(&[(4, 'd'), (8, 'h')], &rows, &[(10, 'k')]);
        assert_eq!(c.pruned, 2);
        assert_eq!(
            c.faults,
            [AnchorFault::NewestPruned {
                anchor: 8,
                checkpoint: 10
            }]
        );
    }

    #[test]
    fn keys_and_bodies_round_trip_and_must_agree() {
        let head = ChainHead {
            id: 42,
            hash: h('a'),
            at: t(),
        };
        let a = Anchor::of(&head, t(), "host-1");
        let key = a.key("p/");
        assert_eq!(key, format!("p/00000000000000000042-{}.json", h('a')));
        assert_eq!(Anchor::parse_key("p/", &key), Some((42, h('a'))));
        assert_eq!(Anchor::from_object("p/", &key, &a.body()), Ok(a.clone()));
        assert_eq!(Anchor::parse_key("p/", "p/notes.txt"), None);
        assert_eq!(Anchor::parse_key("p/", &key.replace("p/", "q/")), None);
        let mut forged = a.clone();
        forged.hash = h('b');
        let err = Anchor::from_object("p/", &key, &forged.body()).unwrap_err();
        assert!(err.contains("was altered"), "{err}");
        let err = Anchor::from_object("p/", &key, b"{}").unwrap_err();
        assert!(err.contains("is not an anchor document"), "{err}");
    }
}
