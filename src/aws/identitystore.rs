//! Identity Store (IAM Identity Center's directory): the three reads rotationd makes,
//! `ListUsers`, `ListGroups` and `ListGroupMemberships`, for `[identity_center]`. A
//! departure event from Identity Center names only the user's id; this listing is what
//! turns it into the user name and groups that custodians are written with
//! (`crate::directory`).

use aws_config::SdkConfig;
use aws_sdk_identitystore::Client;

use super::{AwsError, RequestCounter};

/// The Identity Store client for one identity store (`d-…`), in its own region.
#[derive(Clone, Debug)]
pub struct IdentityStore {
    client: Client,
    store_id: String,
}

/// The whole directory as listed: users, groups and who is in which group, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// (user id, user name).
    pub users: Vec<(String, String)>,
    /// (group id, display name).
    pub groups: Vec<(String, String)>,
    /// (group id, user id).
    pub memberships: Vec<(String, String)>,
}

impl IdentityStore {
    /// The client for `store_id`; `region`: where Identity Center runs when it is not
    /// `[aws] region`.
    pub fn new(
        sdk: &SdkConfig,
        counter: &RequestCounter,
        store_id: &str,
        region: Option<&str>,
    ) -> IdentityStore {
        let mut conf =
            aws_sdk_identitystore::config::Builder::from(sdk).interceptor(counter.clone());
        if let Some(r) = region {
            conf = conf.region(aws_config::Region::new(r.to_string()));
        }
        IdentityStore {
            client: Client::from_conf(conf.build()),
            store_id: store_id.to_string(),
        }
    }

    /// Lists every user, every group and every group's members, page by page
    /// (1 + 1 + one per group calls, more for long lists).
    pub async fn list(&self) -> Result<Listing, AwsError> {
        let mut out = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_users()
                .identity_store_id(&self.store_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListUsers", e))?;
            for u in page.users() {
                if let Some(name) = u.user_name() {
                    out.users.push((u.user_id().to_string(), name.to_string()));
                }
            }
            match page.next_token().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        loop {
            let page = self
                .client
                .list_groups()
                .identity_store_id(&self.store_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListGroups", e))?;
            for g in page.groups() {
                if let Some(name) = g.display_name() {
                    out.groups
                        .push((g.group_id().to_string(), name.to_string()));
                }
            }
            match page.next_token().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        for (group, _) in &out.groups {
            loop {
                let page = self
                    .client
                    .list_group_memberships()
                    .identity_store_id(&self.store_id)
                    .group_id(group)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ListGroupMemberships", e))?;
                for m in page.group_memberships() {
                    if let Some(aws_sdk_identitystore::types::MemberId::UserId(u)) = m.member_id() {
                        out.memberships.push((group.clone(), u.clone()));
                    }
                }
                match page.next_token().filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}
