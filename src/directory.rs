//! Who is who in IAM Identity Center, for departures and custodians (`[identity_center]`).
//!
//! Identity Center's departure events (`DeleteUser`, `DisableUser`) name only the user's
//! immutable id, while custodians are written as user names and group names. The
//! [`Directory`] bridges the two:
//!
//! - read once per reconcile pass (`ListUsers`, `ListGroups`, `ListGroupMemberships`
//!   through `aws::identitystore`), never per event;
//! - merged with the users remembered in the store (`store::KnownUser`): a `DeleteUser`
//!   arrives after the user is gone from the Identity Store, so the pass that follows a
//!   deletion no longer lists them; what an earlier pass saw (name, groups) still resolves
//!   the event, also right after a restart, and when the Identity Store does not answer
//!   the last good directory stays in use.
//!
//! [`resolve`] (pure) turns a departure's user (name and/or id) into the names and
//! Identity Center groups custodians are matched against, or says it cannot:
//! `departure_unresolved`. User names compare case-insensitively, as IAM and Identity
//! Center compare them; group names exactly.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::aws::identitystore::{IdentityStore, Listing};
use crate::store::{KnownUser, StoreError, StoreHandle};

/// One user: the name custodians are written with, and their Identity Center groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub groups: Vec<String>,
    /// Listed by the latest snapshot (`false`: remembered from an earlier one).
    pub listed: bool,
}

/// The Identity Center directory as rotationd knows it: the latest snapshot and the users
/// remembered from earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    users: HashMap<String, Person>,
    /// Lowercased user name -> user ids.
    by_name: HashMap<String, Vec<String>>,
    /// Group display name -> the user names of its members (remembered ones included).
    members: HashMap<String, Vec<String>>,
    /// When the latest snapshot was taken; `None`: only remembered users.
    pub taken_at: Option<DateTime<Utc>>,
}

impl Directory {
    /// The directory from a listing taken at `taken_at` (`None`: no snapshot, only what
    /// was remembered) and the users remembered from earlier ones (listed users win).
    pub fn build(
        listing: Option<&Listing>,
        remembered: Vec<KnownUser>,
        taken_at: Option<DateTime<Utc>>,
    ) -> Directory {
        let mut users: HashMap<String, Person> = HashMap::new();
        let mut groups_in_listing: BTreeSet<String> = BTreeSet::new();
        if let Some(l) = listing {
            for user in known_users(l, taken_at.unwrap_or_default()) {
                users.insert(
                    user.user_id,
                    Person {
                        name: user.user_name,
                        groups: user.groups,
                        listed: true,
                    },
                );
            }
            groups_in_listing.extend(l.groups.iter().map(|(_, n)| n.clone()));
        }
        for r in remembered {
            users.entry(r.user_id).or_insert(Person {
                name: r.user_name,
                groups: r.groups,
                listed: false,
            });
        }
        let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
        let mut members: HashMap<String, Vec<String>> = groups_in_listing
            .into_iter()
            .map(|g| (g, Vec::new()))
            .collect();
        for (id, p) in &users {
            by_name
                .entry(p.name.to_lowercase())
                .or_default()
                .push(id.clone());
            for g in &p.groups {
                members.entry(g.clone()).or_default().push(p.name.clone());
            }
        }
        for ids in by_name.values_mut() {
            ids.sort();
        }
        for names in members.values_mut() {
            names.sort();
            names.dedup();
        }
        Directory {
            users,
            by_name,
            members,
            taken_at,
        }
    }

    /// The user with this id.
    pub fn person(&self, user_id: &str) -> Option<&Person> {
        self.users.get(user_id)
    }

    /// The Identity Center groups of the users called `name` (any case).
    pub fn groups_of_name(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_name
            .get(&name.to_lowercase())
            .into_iter()
            .flatten()
            .filter_map(|id| self.users.get(id))
            .flat_map(|p| p.groups.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The user names of the members of Identity Center group `group`, if it exists.
    pub fn group_members(&self, group: &str) -> Option<&[String]> {
        self.members.get(group).map(Vec::as_slice)
    }

    /// How many users it knows, listed and remembered.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The users of a listing, each with the display names of their groups, as the store
/// remembers them.
pub fn known_users(listing: &Listing, now: DateTime<Utc>) -> Vec<KnownUser> {
    let group_names: HashMap<&str, &str> = listing
        .groups
        .iter()
        .map(|(id, name)| (id.as_str(), name.as_str()))
        .collect();
    let mut groups_of: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for (group, user) in &listing.memberships {
        if let Some(name) = group_names.get(group.as_str()) {
            groups_of
                .entry(user.as_str())
                .or_default()
                .insert((*name).to_string());
        }
    }
    let mut users: Vec<KnownUser> = listing
        .users
        .iter()
        .map(|(id, name)| KnownUser {
            user_id: id.clone(),
            user_name: name.clone(),
            groups: groups_of
                .get(id.as_str())
                .map(|g| g.iter().cloned().collect())
                .unwrap_or_default(),
            seen_at: now,
        })
        .collect();
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    users
}

/// Who left, as far as can be told: the names custodians are matched against (any case)
/// and the Identity Center groups they were in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Departed {
    pub names: Vec<String>,
    pub groups: Vec<String>,
    /// The user id the event named, when it named one.
    pub user_id: Option<String>,
}

impl Departed {
    /// Whether `user` (a custodian's user name) is one of the departed's names.
    pub fn is(&self, user: &str) -> bool {
        let user = user.to_lowercase();
        self.names.iter().any(|n| n.to_lowercase() == user)
    }
}

/// What a departure's user turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Known(Departed),
    /// The event named only a user id that no directory knows: nobody can tell whose
    /// secrets to rotate (`departure_unresolved`).
    Unresolved {
        user_id: String,
    },
}

/// Resolves a departure of `user` (the event's user name, or its user id when it carried
/// no name) with `user_id` (the id, when the event carried one). Pure.
pub fn resolve(dir: Option<&Directory>, user: &str, user_id: Option<&str>) -> Resolution {
    let named = user_id != Some(user);
    let mut d = Departed {
        names: Vec::new(),
        groups: Vec::new(),
        user_id: user_id.map(str::to_string),
    };
    if named {
        d.names.push(user.to_string());
        if let Some(dir) = dir {
            d.groups = dir.groups_of_name(user);
        }
    }
    if let Some(person) = user_id.and_then(|id| dir.and_then(|dir| dir.person(id))) {
        if !d.is(&person.name) {
            d.names.push(person.name.clone());
        }
        d.groups.extend(person.groups.iter().cloned());
        d.groups.sort();
        d.groups.dedup();
    } else if !named {
        return Resolution::Unresolved {
            user_id: user.to_string(),
        };
    }
    Resolution::Known(d)
}

/// Reads the directory (one listing), remembers its users in the store, and returns it
/// merged with the users remembered from earlier listings. An error leaves the store as
/// it was; the caller keeps its last good directory.
pub async fn refresh(
    ids: &IdentityStore,
    store: &StoreHandle,
    now: DateTime<Utc>,
) -> anyhow::Result<Directory> {
    use anyhow::Context;
    let listing = ids.list().await.context("identity store")?;
    let users = known_users(&listing, now);
    let written = store
        .call(move |s| s.db().remember_users(&users, now))
        .await?;
    if written > 0 {
        tracing::info!(
            users = listing.users.len(),
            groups = listing.groups.len(),
            written,
            "identity center directory read"
        );
    }
    let remembered = store.call(|s| s.db().known_users()).await?;
    Ok(Directory::build(Some(&listing), remembered, Some(now)))
}

/// The directory from what the store remembers alone: what a process starts with, so a
/// departure handled before the first listing (or while the Identity Store does not
/// answer) still resolves.
pub async fn remembered(store: &StoreHandle) -> Result<Directory, StoreError> {
    let known = store.call(|s| s.db().known_users()).await?;
    Ok(Directory::build(None, known, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> Listing {
        Listing {
            users: vec![
                ("u-ivan".into(), "Ivan@Example.com".into()),
                ("u-erin".into(), "erin".into()),
            ],
            groups: vec![
                ("g-dba".into(), "dba".into()),
                ("g-ops".into(), "ops".into()),
            ],
            memberships: vec![
                ("g-dba".into(), "u-ivan".into()),
                ("g-ops".into(), "u-ivan".into()),
                ("g-ops".into(), "u-erin".into()),
                // A membership of a user the listing does not have: ignored.
                ("g-dba".into(), "u-ghost".into()),
            ],
        }
    }

    fn gone(id: &str, name: &str, groups: &[&str]) -> KnownUser {
        KnownUser {
            user_id: id.into(),
            user_name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            seen_at: DateTime::default(),
        }
    }

    #[test]
    fn a_user_id_finds_the_name_and_groups_also_after_the_user_is_gone() {
        let dir = Directory::build(
            Some(&listing()),
            vec![
                gone("u-carol", "carol", &["dba"]),
                // Remembered under an old name: the listing wins.
                gone("u-erin", "erin.old", &[]),
            ],
            Some(DateTime::default()),
        );
        assert_eq!(
            resolve(Some(&dir), "u-ivan", Some("u-ivan")),
            Resolution::Known(Departed {
                names: vec!["Ivan@Example.com".into()],
                groups: vec!["dba".into(), "ops".into()],
                user_id: Some("u-ivan".into()),
            })
        );
        // Deleted before this listing: remembered.
        let carol = resolve(Some(&dir), "u-carol", Some("u-carol"));
        assert_eq!(
            carol,
            Resolution::Known(Departed {
                names: vec!["carol".into()],
                groups: vec!["dba".into()],
                user_id: Some("u-carol".into()),
            })
        );
        assert_eq!(dir.person("u-erin").map(|p| p.name.as_str()), Some("erin"));
        assert_eq!(
            dir.group_members("dba"),
            Some(&["Ivan@Example.com".to_string(), "carol".to_string()][..])
        );
        assert_eq!(dir.group_members("nobody"), None);
        assert_eq!(
            resolve(Some(&dir), "u-nobody", Some("u-nobody")),
            Resolution::Unresolved {
                user_id: "u-nobody".into()
            }
        );
        assert_eq!(
            resolve(None, "u-ivan", Some("u-ivan")),
            Resolution::Unresolved {
                user_id: "u-ivan".into()
            }
        );
    }

    #[test]
    fn a_user_name_finds_its_identity_center_groups_in_any_case() {
        let dir = Directory::build(Some(&listing()), Vec::new(), None);
        let Resolution::Known(d) = resolve(Some(&dir), "ivan@example.COM", None) else {
            panic!("a name always resolves");
        };
        assert_eq!(d.groups, vec!["dba", "ops"]);
        assert!(d.is("IVAN@example.com"));
        assert!(!d.is("ivan"));
        // A name with an id the directory does not know: the name is what there is.
        let Resolution::Known(d) = resolve(Some(&dir), "mallory", Some("u-m")) else {
            panic!("a name always resolves");
        };
        assert_eq!(d.names, vec!["mallory"]);
        assert!(d.groups.is_empty());
        let Resolution::Known(d) = resolve(None, "Alice", None) else {
            panic!("a name always resolves");
        };
        assert!(d.is("alice"));
    }

    #[test]
    fn known_users_carry_their_group_names() {
        let users = known_users(&listing(), DateTime::default());
        assert_eq!(
            users
                .iter()
                .map(|u| (u.user_id.as_str(), u.groups.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("u-erin", vec!["ops".to_string()]),
                ("u-ivan", vec!["dba".to_string(), "ops".to_string()]),
            ]
        );
    }
}
