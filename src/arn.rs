//! Amazon Resource Names: the one parser of `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`
//! and the one list of partitions, for the config checks, the inventory, the event
//! consumers and the routing of a call to its account-region ([`crate::aws::Targets`]).
//! A leaf module: it depends on nothing else in the crate, so that every module can use it.
//!
//! # Partitions
//!
//! [`PARTITIONS`] is the list of the partitions the AWS SDK that rotationd links knows
//! (the `partitions.json` inside each `aws-sdk-*` crate: `aws`, `aws-cn`, `aws-us-gov`,
//! `aws-eusc`, `aws-iso`, `aws-iso-b`, `aws-iso-e`, `aws-iso-f`). rotationd does nothing
//! partition-specific: every client resolves its endpoint from its region through the SDK,
//! so a partition the SDK can reach is one rotationd can work in, and an ARN of a partition
//! the SDK does not know can name nothing rotationd could call. The list used to be three
//! different ones (the config's topic and secret ARNs took the first five, `role_arn` the
//! first three, the routing any); a narrower list would refuse valid ARNs of the sovereign
//! and isolated partitions, a wider one would accept ARNs no client can reach. When the SDK
//! gains a partition, add it here.
//!
//! # What is checked here and what is not
//!
//! [`Arn::parse`] checks the shape (six colon-separated parts, the first `arn`) and the
//! partition, nothing else: the region and the account are empty in some ARNs (IAM has no
//! region, S3 no account), and what a field must look like for one use (a secret's 12-digit
//! account, a topic's region) is the caller's rule, said in the caller's words (the config
//! checks in `config/checks.rs`).

use std::fmt;

/// Every partition an ARN may name; see the module doc for why these.
pub const PARTITIONS: [&str; 8] = [
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-eusc",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
];

/// The `account` label of a [`Place`] when no `[[account]]` is configured: the daemon's
/// own credentials.
pub const OWN_ACCOUNT: &str = "self";

/// The `-` and six random characters Secrets Manager appends to a secret's name in its ARN.
const SECRET_SUFFIX_LEN: usize = 7;

/// An ARN split into its parts, borrowed from the text it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arn<'a> {
    /// One of [`PARTITIONS`].
    pub partition: &'a str,
    pub service: &'a str,
    /// Empty for global services (IAM).
    pub region: &'a str,
    /// Empty for some services (S3 buckets).
    pub account: &'a str,
    /// Everything after the fifth colon, colons included (`secret:NAME-AbCdEf`,
    /// `role/PATH/NAME`, a topic's name).
    pub resource: &'a str,
}

/// Why a text is not an ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    /// Fewer than six colon-separated parts, or not starting with `arn`.
    #[error("expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE")]
    Shape,
    /// The second part is not one of [`PARTITIONS`].
    #[error("unknown partition `{0}`")]
    UnknownPartition(String),
}

impl<'a> Arn<'a> {
    /// Splits `text` into its parts; an error when it does not have the shape of an ARN or
    /// names a partition that is not one of [`PARTITIONS`].
    pub fn parse(text: &'a str) -> Result<Arn<'a>, ArnError> {
        let mut parts = text.splitn(6, ':');
        let mut next = || parts.next().ok_or(ArnError::Shape);
        let (prefix, partition, service, region, account, resource) =
            (next()?, next()?, next()?, next()?, next()?, next()?);
        if prefix != "arn" {
            return Err(ArnError::Shape);
        }
        if !PARTITIONS.contains(&partition) {
            return Err(ArnError::UnknownPartition(partition.to_string()));
        }
        Ok(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    /// The account and region the ARN names; `None` when either is empty (an IAM role has
    /// no region: no client of rotationd's serves it).
    pub fn place(&self) -> Option<Place> {
        (!self.region.is_empty() && !self.account.is_empty()).then(|| Place {
            account: self.account.to_string(),
            region: self.region.to_string(),
        })
    }

    /// The secret's name in a Secrets Manager secret ARN: `...:secret:prod/db-AbCdEf` →
    /// `prod/db`, without the dash and six random characters Secrets Manager appends.
    /// `None` for another service's ARN, a resource that is not a secret, or one without
    /// the suffix (a partial ARN: the name alone cannot be told from its last dash).
    pub fn secret_name(&self) -> Option<&'a str> {
        if self.service != "secretsmanager" {
            return None;
        }
        let resource = self.resource.strip_prefix("secret:")?;
        let cut = resource.len().checked_sub(SECRET_SUFFIX_LEN)?;
        if cut == 0 || resource.as_bytes().get(cut) != Some(&b'-') {
            return None;
        }
        // The byte at `cut` is an ASCII dash, so `cut` is a character boundary.
        Some(&resource[..cut])
    }

    /// The path and name of an IAM role ARN: `role/ops/security/rotationd` →
    /// `("ops/security", "rotationd")`, `role/rotationd` → `("", "rotationd")`. `None` for
    /// another service, or a resource that is not a role. The name may be empty
    /// (`role/ops/`): the caller says what is wrong with it.
    pub fn role_path_and_name(&self) -> Option<(&'a str, &'a str)> {
        if self.service != "iam" {
            return None;
        }
        let path_name = self.resource.strip_prefix("role/")?;
        Some(path_name.rsplit_once('/').unwrap_or(("", path_name)))
    }

    /// The name of an IAM role ARN (see [`Arn::role_path_and_name`]).
    pub fn role_name(&self) -> Option<&'a str> {
        self.role_path_and_name().map(|(_, name)| name)
    }
}

/// What kind of IAM principal a [`Principal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    User,
    Role,
}

/// An IAM user or role as `[requests] levels` matches it: partition, account, kind and
/// name, the name lowercased. STS names an assumed-role session
/// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, without the role's path, so a role is
/// matched by account and name and never by path; IAM keeps user and role names unique
/// per account whatever their case and path (`Admin` and `admin` cannot both exist), so
/// the account, the kind and the lowercased name name one principal. The session name is
/// dropped: whoever assumes a role chooses it, so it identifies nobody.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub partition: String,
    pub account: String,
    pub kind: PrincipalKind,
    /// Lowercased.
    pub name: String,
}

impl Principal {
    /// The principal `text` names: an IAM user (`arn:aws:iam::ACCOUNT:user/PATH/NAME`), an
    /// IAM role (`...:role/PATH/NAME`) or an STS assumed-role session (the role). `None`
    /// for anything else (the account root, a federated user, a plain name), which is
    /// matched exactly as written.
    pub fn of(text: &str) -> Option<Principal> {
        let arn = Arn::parse(text.trim()).ok()?;
        if arn.account.is_empty() || !arn.region.is_empty() {
            return None;
        }
        let (kind, name) = match arn.service {
            "iam" => {
                if let Some(rest) = arn.resource.strip_prefix("user/") {
                    (PrincipalKind::User, rest.rsplit('/').next()?)
                } else {
                    (PrincipalKind::Role, arn.role_name()?)
                }
            }
            "sts" => {
                let rest = arn.resource.strip_prefix("assumed-role/")?;
                let (role, session) = rest.split_once('/')?;
                if session.is_empty() || session.contains('/') {
                    return None;
                }
                (PrincipalKind::Role, role)
            }
            _ => return None,
        };
        if name.is_empty() {
            return None;
        }
        Some(Principal {
            partition: arn.partition.to_string(),
            account: arn.account.to_string(),
            kind,
            name: name.to_lowercase(),
        })
    }

    /// Whether `text` is an STS assumed-role session ARN (a [`Principal`] of its role).
    pub fn is_session(text: &str) -> bool {
        Arn::parse(text.trim())
            .is_ok_and(|a| a.service == "sts" && a.resource.starts_with("assumed-role/"))
    }
}

impl fmt::Display for Principal {
    /// The principal's ARN without a path, its name lowercased: `arn:aws:iam::1:role/ops`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PrincipalKind::User => "user",
            PrincipalKind::Role => "role",
        };
        write!(
            f,
            "arn:{}:iam::{}:{kind}/{}",
            self.partition, self.account, self.name
        )
    }
}

/// Whether two identities are the same principal: equal [`Principal`]s (two sessions of
/// one role are one principal: rotationd cannot tell who is behind a session), else the
/// same text.
pub fn same_principal(a: &str, b: &str) -> bool {
    match (Principal::of(a), Principal::of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

impl fmt::Display for Arn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

/// Where an AWS client works: one account and one region. Labels metrics, alerts and logs.
/// It lives with the ARN, which names it, so that the metrics (which label by it) do not
/// depend on the AWS clients (which count requests into the metrics).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    /// The 12-digit account id, or [`OWN_ACCOUNT`] without `[[account]]` tables.
    pub account: String,
    pub region: String,
}

impl Place {
    /// The account and region `text` names, when it is an ARN that names both
    /// ([`Arn::place`]); `None` for a secret's bare name.
    pub fn of_arn(text: &str) -> Option<Place> {
        Arn::parse(text).ok()?.place()
    }

    /// The daemon's own account in `region` (a client's configured region; `unset` when it
    /// has none): the one place without `[[account]]`.
    pub fn own(region: Option<&str>) -> Place {
        Place {
            account: OWN_ACCOUNT.into(),
            region: region.unwrap_or("unset").to_string(),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account {} region {}", self.account, self.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str =
        "arn:aws:secretsmanager:eu-west-1:111111111111:secret:prod/payments/db-AbC123";

    #[test]
    fn a_secret_arn_splits_into_its_parts() {
        let arn = Arn::parse(SECRET).unwrap();
        assert_eq!(
            arn,
            Arn {
                partition: "aws",
                service: "secretsmanager",
                region: "eu-west-1",
                account: "111111111111",
                resource: "secret:prod/payments/db-AbC123",
            }
        );
        assert_eq!(arn.secret_name(), Some("prod/payments/db"));
        assert_eq!(
            arn.place(),
            Some(Place {
                account: "111111111111".into(),
                region: "eu-west-1".into()
            })
        );
        assert_eq!(arn.role_name(), None);
        assert_eq!(arn.to_string(), SECRET);
    }

    #[test]
    fn principals_are_matched_by_account_kind_and_name_without_path_or_session() {
        let p = |t: &str| Principal::of(t).map(|p| p.to_string());
        assert_eq!(
            p("arn:aws:iam::111111111111:role/team/Lead"),
            Some("arn:aws:iam::111111111111:role/lead".into())
        );
        // What STS returns for a session of that role: no path, a session name.
        assert_eq!(
            p("arn:aws:sts::111111111111:assumed-role/Lead/alice"),
            Some("arn:aws:iam::111111111111:role/lead".into())
        );
        assert_eq!(
            p("arn:aws:iam::111111111111:user/ops/alice"),
            Some("arn:aws:iam::111111111111:user/alice".into())
        );
        // A user and a role of one name are two principals; so are two accounts.
        assert_ne!(
            Principal::of("arn:aws:iam::111111111111:user/x"),
            Principal::of("arn:aws:iam::111111111111:role/x")
        );
        assert_ne!(
            Principal::of("arn:aws:iam::111111111111:role/x"),
            Principal::of("arn:aws:iam::222222222222:role/x")
        );
        // Not a user, a role or a session: matched exactly, as written.
        for t in [
            "alice",
            "arn:aws:iam::111111111111:root",
            "arn:aws:sts::111111111111:federated-user/bob",
            "arn:aws:sts::123456789012:user/moto",
            "arn:aws:iam::111111111111:group/admins",
            "arn:aws:sts::111111111111:assumed-role/Lead",
            "arn:aws:sts::111111111111:assumed-role/Lead/",
            "arn:aws:iam::111111111111:role/",
            "arn:aws:sns:us-east-1:111111111111:role/x",
        ] {
            assert_eq!(Principal::of(t), None, "{t}");
        }
        assert!(Principal::is_session(
            "arn:aws:sts::111111111111:assumed-role/Lead/alice"
        ));
        assert!(!Principal::is_session(
            "arn:aws:iam::111111111111:role/Lead"
        ));
    }

    #[test]
    fn two_sessions_of_one_role_are_one_principal() {
        assert!(same_principal(
            "arn:aws:sts::111111111111:assumed-role/Lead/alice",
            "arn:aws:sts::111111111111:assumed-role/lead/bob"
        ));
        assert!(same_principal(
            "arn:aws:iam::111111111111:user/ops/alice",
            "arn:aws:iam::111111111111:user/alice"
        ));
        assert!(!same_principal(
            "arn:aws:iam::111111111111:user/alice",
            "arn:aws:iam::111111111111:user/bob"
        ));
        assert!(same_principal("junior", "junior"));
        assert!(!same_principal("junior", "Junior"));
    }

    #[test]
    fn the_resource_keeps_its_colons() {
        let arn = Arn::parse("arn:aws:logs:us-east-1:123456789012:log-group:/aws/x:*").unwrap();
        assert_eq!(arn.resource, "log-group:/aws/x:*");
    }

    #[test]
    fn every_partition_of_the_list_parses_and_no_other() {
        for p in PARTITIONS {
            let text = format!("arn:{p}:sns:us-east-1:123456789012:topic");
            assert_eq!(Arn::parse(&text).map(|a| a.partition), Ok(p), "{text}");
        }
        for p in ["", "AWS", "aws-moon", "aws-iso-z", "aws-cn ", "gcp"] {
            let text = format!("arn:{p}:sns:us-east-1:123456789012:topic");
            assert_eq!(
                Arn::parse(&text),
                Err(ArnError::UnknownPartition(p.to_string())),
                "{text}"
            );
        }
    }

    #[test]
    fn text_without_the_shape_of_an_arn_is_refused() {
        for text in [
            "",
            "arn",
            "arn:aws",
            "arn:aws:sns:us-east-1:123456789012",
            "rotationd-notify",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "ARN:aws:sns:us-east-1:123456789012:topic",
            " arn:aws:sns:us-east-1:123456789012:topic",
            "urn:aws:sns:us-east-1:123456789012:topic",
        ] {
            assert_eq!(Arn::parse(text), Err(ArnError::Shape), "{text:?}");
        }
    }

    #[test]
    fn the_shape_is_judged_before_the_partition() {
        // A five-part text with a bad partition is "not an ARN", as the config always said.
        assert_eq!(Arn::parse("arn:gcp:sns:r:a"), Err(ArnError::Shape));
    }

    #[test]
    fn empty_parts_parse_and_are_left_to_the_caller() {
        let arn = Arn::parse("arn:aws:::").err();
        assert_eq!(arn, Some(ArnError::Shape));
        let arn = Arn::parse("arn:aws::::").unwrap();
        assert_eq!(
            (arn.service, arn.region, arn.account, arn.resource),
            ("", "", "", "")
        );
        assert_eq!(arn.place(), None);
    }

    #[test]
    fn a_place_needs_both_a_region_and_an_account() {
        let iam = Arn::parse("arn:aws:iam::111111111111:role/r").unwrap();
        assert_eq!(iam.place(), None);
        let s3 = Arn::parse("arn:aws:s3:::bucket").unwrap();
        assert_eq!(s3.place(), None);
        let no_account = Arn::parse("arn:aws:sns:us-east-1::topic").unwrap();
        assert_eq!(no_account.place(), None);
    }

    #[test]
    fn secret_names_lose_exactly_the_random_suffix() {
        fn name(text: &str) -> Option<&str> {
            Arn::parse(text).ok()?.secret_name()
        }
        let base = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";
        assert_eq!(name(&format!("{base}prod/b-AbCdEf")), Some("prod/b"));
        // A name with dashes of its own keeps them.
        assert_eq!(name(&format!("{base}my-app-db-x1Y2z3")), Some("my-app-db"));
        // One character is a name.
        assert_eq!(name(&format!("{base}a-AbCdEf")), Some("a"));
        // No suffix (a partial ARN), a suffix alone, or too short.
        assert_eq!(name(&format!("{base}prod/b")), None);
        assert_eq!(name(&format!("{base}-AbCdEf")), None);
        assert_eq!(name(&format!("{base}AbCdEf")), None);
        assert_eq!(name(base), None);
        // Not a secret, or not Secrets Manager.
        assert_eq!(
            name("arn:aws:secretsmanager:us-east-1:123456789012:other:x-AbCdEf"),
            None
        );
        assert_eq!(
            name("arn:aws:ssm:us-east-1:123456789012:secret:x-AbCdEf"),
            None
        );
        assert_eq!(name("arn:aws:sns:us-east-1:123456789012:x"), None);
        // A multibyte character just before the cut is not split.
        assert_eq!(name(&format!("{base}é-AbCdEf")), Some("é"));
        assert_eq!(name(&format!("{base}xé-AbCd")), None);
    }

    #[test]
    fn role_paths_and_names() {
        fn role(text: &str) -> Option<(&str, &str)> {
            Arn::parse(text).ok()?.role_path_and_name()
        }
        assert_eq!(
            role("arn:aws:iam::111111111111:role/rotationd"),
            Some(("", "rotationd"))
        );
        assert_eq!(
            role("arn:aws-us-gov:iam::111111111111:role/ops/security/rotationd"),
            Some(("ops/security", "rotationd"))
        );
        assert_eq!(
            role("arn:aws:iam::111111111111:role/ops/"),
            Some(("ops", ""))
        );
        assert_eq!(role("arn:aws:iam::111111111111:role/"), Some(("", "")));
        assert_eq!(role("arn:aws:iam::111111111111:user/rotationd"), None);
        assert_eq!(role("arn:aws:sts::111111111111:role/rotationd"), None);
        assert_eq!(
            Arn::parse("arn:aws:iam::111111111111:role/ops/r")
                .unwrap()
                .role_name(),
            Some("r")
        );
    }

    #[test]
    fn places_show_account_and_region() {
        assert_eq!(
            Place {
                account: "111111111111".into(),
                region: "eu-west-1".into()
            }
            .to_string(),
            "account 111111111111 region eu-west-1"
        );
        assert_eq!(
            Place::own(Some("us-east-1")),
            Place {
                account: OWN_ACCOUNT.into(),
                region: "us-east-1".into()
            }
        );
        assert_eq!(Place::own(None).region, "unset");
    }

    fn partition() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(PARTITIONS.to_vec())
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = Arn::parse(&text).map(|a| (a.secret_name(), a.role_path_and_name(), a.place()));
        }

        #[test]
        fn parts_round_trip(
            partition in partition(),
            service in "[a-z0-9-]{0,20}",
            region in "[a-z0-9-]{0,20}",
            account in "[0-9]{0,12}",
            resource in "[ -~]{0,80}",
        ) {
            let text = format!("arn:{partition}:{service}:{region}:{account}:{resource}");
            let arn = Arn::parse(&text).unwrap();
            prop_assert_eq!(arn, Arn {
                partition,
                service: &service,
                region: &region,
                account: &account,
                resource: &resource,
            });
            prop_assert_eq!(arn.to_string(), text.clone());
            prop_assert_eq!(
                arn.place().is_some(),
                !region.is_empty() && !account.is_empty()
            );
        }

        #[test]
        fn secret_names_round_trip(
            partition in partition(),
            name in "[A-Za-z0-9/_+=.@-]{1,64}",
            suffix in "[A-Za-z0-9]{6}",
        ) {
            let text = format!("arn:{partition}:secretsmanager:eu-west-1:111111111111:secret:{name}-{suffix}");
            prop_assert_eq!(Arn::parse(&text).unwrap().secret_name(), Some(name.as_str()));
        }

        #[test]
        fn role_names_round_trip(
            partition in partition(),
            path in proptest::collection::vec("[A-Za-z0-9+=,.@_-]{1,10}", 0..4),
            name in "[A-Za-z0-9+=,.@_-]{1,64}",
        ) {
            let mut resource = String::from("role/");
            for p in &path {
                resource.push_str(p);
                resource.push('/');
            }
            resource.push_str(&name);
            let text = format!("arn:{partition}:iam::111111111111:{resource}");
            let arn = Arn::parse(&text).unwrap();
            let path = path.join("/");
            prop_assert_eq!(arn.role_path_and_name(), Some((path.as_str(), name.as_str())));
        }

        #[test]
        fn other_partitions_are_refused(partition in "[a-z-]{0,12}") {
            prop_assume!(!PARTITIONS.contains(&partition.as_str()));
            let text = format!("arn:{partition}:sns:us-east-1:123456789012:topic");
            prop_assert_eq!(Arn::parse(&text), Err(ArnError::UnknownPartition(partition)));
        }
    }
}
